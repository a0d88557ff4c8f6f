"""The ``transferlab`` command line: thin shells over the Python API.

The entry point is ``transferlab.cli.main:run`` and the click group ``transferlab.cli.main:main``
(import them from ``transferlab.cli.main``: ``transferlab.cli.main`` is the module).
"""
