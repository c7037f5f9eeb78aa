"""How a run ends: a clean stop with state (limits, budget, signals) and the exit status it earns."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from tap_salesforce_groups.errors import RunStopped

EXIT_FAILED = 1
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + signal number, as shells report


class RunInterrupted(BaseException):
    """Raised by the signal handler while the tap waits on Salesforce: abandon that request.

    A BaseException, so that no ``except Exception`` on the way (requests, urllib3) swallows it.
    """


class RunControl:
    """Shared by the tap and its streams: why the run stopped, and whether to stop reading now."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.stopped_reason: str | None = None
        self.exit_code = 0
        self.waiting = False  # True while a stream waits on Salesforce (safe to interrupt)

    def stop(self, reason: str, *, failed: bool) -> None:
        """End the run after the current stream's state is written."""
        if self.stopped_reason is None:
            self.stopped_reason = reason
        if failed and not self.exit_code:
            self.exit_code = EXIT_FAILED
        (self.logger.error if failed else self.logger.warning)("Stopping: %s", reason)

    def raise_if_stopped(self) -> None:
        """After the final STATE: a failed or interrupted run ends with its exit status.

        Raises:
            RunStopped: the run failed (1) or a signal stopped it (130, 143).
        """
        if self.exit_code:
            msg = f"run stopped: {self.stopped_reason}; state written for the records emitted"
            raise RunStopped(msg, self.exit_code)

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop reading; the state of what was emitted is still written."""
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_SIGNAL:
                signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.stopped_reason = self.stopped_reason or f"interrupted by {name}"
        self.exit_code = EXIT_SIGNAL[signal.Signals(signum)]
        if self.waiting:
            raise RunInterrupted(name)
