"""One-line errors for users, and the guard every command-line entry point runs under.

A `UserError` carries a message that names the problem and the fix. Entry points run their work
inside `exit_on_user_error()`, which prints such errors (and the `ValueError`s, `FileNotFoundError`s
and `OSError`s that input checks raise) as a single ``error: ...`` line and exits with status 2,
never with a traceback. Programming errors still raise normally.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator


class UserError(Exception):
    """A problem with the user's input, files or configuration; the message says how to fix it."""


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turn user-facing errors raised inside the block into one stderr line and exit status 2."""
    try:
        yield
    except (UserError, ValueError, FileNotFoundError, OSError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted; re-run the same command to resume where it stopped", file=sys.stderr)
        sys.exit(130)
