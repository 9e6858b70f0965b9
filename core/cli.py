"""One error wrapper for every command-line entry point (train.py, envs.datasets, samplers.evaluate, runner.sweep):
a bad input or a failed run is one line on stderr and a non-zero exit, never a traceback. Set
DIFFUSION_BASELINES_TRACEBACK=1 to see the traceback instead (debugging)."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


#: Errors that report a bad input or a failed run rather than a bug worth a traceback (OSError covers missing,
#: unreadable and truncated files; KeyError and TypeError the malformed contents of files and arguments).
class RunFailed(Exception):
    """A run that failed for a reason its own message and log tell (a trial of a sweep): reported in one line that
    names the run and its log, not as a traceback of the code that waited for it."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    RunFailed,
    ValueError, TypeError, KeyError, OSError, EOFError, zipfile.BadZipFile, FloatingPointError, NotImplementedError,
)  # fmt: skip
TRACEBACK_ENV = "DIFFUSION_BASELINES_TRACEBACK"


def run_cli(main: Callable[[], T]) -> T:
    """Run ``main``; turn a `USER_ERRORS` exception into ``SystemExit("error: <message>")`` (exit status 1)."""
    try:
        return main()
    except USER_ERRORS as error:
        if os.environ.get(TRACEBACK_ENV):
            raise
        message = str(error).strip() or type(error).__name__
        if isinstance(error, KeyError):
            message = f"missing entry {message}"
        raise SystemExit(f"error: {message.splitlines()[0] if len(message) > 400 else message}") from None
