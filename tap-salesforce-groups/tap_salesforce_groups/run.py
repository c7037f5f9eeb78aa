"""How a run ends: a clean stop with state (limits, budget, signals) and the exit status it earns."""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import Any

from tap_salesforce_groups.errors import RunStopped

EXIT_FAILED = 1
EXIT_TEMPFAIL = 75  # sysexits.h EX_TEMPFAIL: stopped by the API budget; the next run goes on
# Top-level STATE key of a run that stopped before reading every object: why, and which objects
# it did not get to (read first next time). The target's run report says `partial` when the
# final STATE holds it.
PARTIAL_KEY = "partial"
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
        self.state: dict[str, Any] | None = None  # the tap's STATE (the dict the SDK writes)
        # Set on a signal: background waits (between Bulk polls) end at once.
        self.stopping = threading.Event()

    def stop(self, reason: str, *, failed: bool, exit_code: int = EXIT_FAILED, partial: bool = False) -> None:
        """End the run after the current stream's state is written.

        ``partial``: a limit stopped the run (the org's, or the API budget); the STATE says so
        and lists the objects not read, so that the next run reads them first.
        """
        if self.stopped_reason is None:
            self.stopped_reason = reason
        if (failed or exit_code != EXIT_FAILED) and not self.exit_code:
            self.exit_code = exit_code
        if partial and self.state is not None:
            self.state[PARTIAL_KEY] = {"reason": reason, "unread": []}
        (self.logger.error if failed else self.logger.warning)("Stopping: %s", reason)

    def skipped(self, stream: str) -> None:
        """A stream not read because the run stopped: the next run reads it first."""
        if self.state is not None and isinstance(self.state.get(PARTIAL_KEY), dict):
            self.state[PARTIAL_KEY]["unread"].append(stream)

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
        if self.stopping.is_set():
            # A second signal: Ctrl-C reaches the whole process group, then Meltano terminates
            # its plugins. The tap is stopping already; raising again would interrupt that.
            return
        name = signal.Signals(signum).name
        self.stopped_reason = self.stopped_reason or f"interrupted by {name}"
        self.exit_code = EXIT_SIGNAL[signal.Signals(signum)]
        self.stopping.set()
        _watchdog(STOP_GRACE_SECONDS, self.exit_code, self.logger)
        if self.waiting:
            raise RunInterrupted(name)


# The longest a signalled run may take to end: the page or Bulk job being read is abandoned
# (prefetch.py waits 12 s for it; a job is aborted and deleted in 5 s + 5 s), then the STATE of
# what was emitted is written.
STOP_GRACE_SECONDS = 30.0


def _watchdog(seconds: float, code: int, logger: logging.Logger) -> None:
    """Exit with ``code`` if the process is still alive ``seconds`` from now.

    After a signal nothing may hang: when the target and Meltano stop reading (they got the
    signal too), a write to the full pipe would block forever, whatever the tap does next.
    """

    def expire() -> None:
        logger.error("run stopped: still stopping after %.0fs (output blocked?); exiting now", seconds)
        os._exit(code)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
