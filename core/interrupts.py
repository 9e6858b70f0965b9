"""SIGINT and SIGTERM as flags, so that a run stops at a step boundary and no file is cut short (train.py's pipeline and
the learn loop of `core.trainer.Trainer` called from Python)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator


class Interrupts:
    """SIGINT and SIGTERM during a run, handled as flags until every file is written. The first signal sets ``stop``
    (the learn loop ends at the next step boundary, so the saved state is never mid-step); inside `abortable` a signal
    also raises KeyboardInterrupt (a second one while learning, any during the final evaluation). Everywhere else the
    handler only records it, so no signal can cut a file short, and the run ends afterwards with the conventional exit
    code 128 + signal. Handlers can only be set from the main thread (Python runs them there, whichever thread the
    signal reached): a run inside a Ray Tune worker thread leaves signals to Ray."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.signal: int | None = None
        self._abort_on: Callable[[bool], bool] = lambda repeated: False

    def _handle(self, signum: int, frame: object) -> None:
        repeated = self.stop.is_set()
        self.stop.set()
        self.signal = signum
        if self._abort_on(repeated):
            raise KeyboardInterrupt(f"signal {signum}")

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Within the block, SIGINT and SIGTERM call the flag handler (in the main thread)."""
        signals = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
        previous = {sig: signal.signal(sig, self._handle) for sig in signals}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    @contextlib.contextmanager
    def abortable(self, on_first: bool) -> Iterator[None]:
        """Within the block a signal raises KeyboardInterrupt: any one with ``on_first``, else a repeated one."""
        self._abort_on = (lambda repeated: True) if on_first else (lambda repeated: repeated)
        try:
            yield
        finally:
            self._abort_on = lambda repeated: False

    @property
    def exit_code(self) -> int:
        return 128 + (self.signal or signal.SIGINT)
