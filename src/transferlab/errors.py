"""The one exception type users see: a clear sentence, never a traceback.

The CLI prints ``error: <message>`` on stderr and exits with code 2 for any
``UserError``; everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user (missing folder, unknown backbone, wrong option...)."""

    exit_code = 2
