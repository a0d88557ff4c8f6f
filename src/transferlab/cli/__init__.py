"""The ``transferlab`` command line: thin shells over the Python API (``transferlab.cli.main:run``)."""
