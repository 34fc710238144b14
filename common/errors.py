"""`UserError`: a problem with the user's input, files or configuration.

Its message names the problem and the fix; entry points print it as one ``error: ...`` line and
exit with status 2 (`common.cli.exit_on_user_error`).
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, files or configuration; the message says how to fix it."""
