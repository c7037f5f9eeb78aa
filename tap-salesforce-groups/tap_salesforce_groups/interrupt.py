"""Ctrl-C and SIGTERM for the command-line tools: one line, exit 130/143, nothing written partially.

The mapping commands (``validate``, ``export``, ``scaffold``, ``verify``, ``editor``, and any
command added later) wrap their body in :func:`exit_on_signals`; a file or stdout block they
write goes through :func:`signals_deferred`, so a signal lands before the write or after it,
never in the middle. The Singer tap has its own handling (``run.RunControl``): it must still
write the state of what it emitted.
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

from tap_salesforce_groups.run import EXIT_SIGNAL

F = TypeVar("F", bound=Callable[..., Any])
SIGNALS = tuple(EXIT_SIGNAL)


class Interrupted(BaseException):
    """A SIGINT or SIGTERM arrived.

    A BaseException, so no ``except Exception`` on the way (requests, urllib3, a command's own error handling)
    swallows it.
    """

    def __init__(self, signum: int) -> None:
        self.signal = signal.Signals(signum)
        self.exit_code = EXIT_SIGNAL[self.signal]
        # How a user names it: Ctrl-C sends SIGINT.
        self.spoken = "Ctrl-C" if self.signal == signal.SIGINT else self.signal.name
        super().__init__(self.signal.name)


class _Deferral:
    """Whether a write is under way in the main thread, and a signal that arrived meanwhile.

    Module-level because signal handlers are: one per process, run by the main thread only.
    """

    depth = 0
    pending: int | None = None


_DEFERRAL = _Deferral()


def _raise(signum: int, frame: FrameType | None) -> None:
    if _DEFERRAL.depth:
        _DEFERRAL.pending = _DEFERRAL.pending or signum
        return
    raise Interrupted(signum)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Finish the block (a write) before SIGINT or SIGTERM takes effect.

    One that came meanwhile lands right after it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread runs signal handlers
        return
    _DEFERRAL.depth += 1
    try:
        yield
    finally:
        _DEFERRAL.depth -= 1
        if not _DEFERRAL.depth and _DEFERRAL.pending is not None:
            signum, _DEFERRAL.pending = _DEFERRAL.pending, None
            raise Interrupted(signum)  # the write is done: now the signal counts


@contextmanager
def exit_on_signals(message: str = "Interrupted by {signal}; nothing was written.") -> Iterator[None]:
    """Run the block so that SIGINT or SIGTERM ends the process: ``message`` on stderr, exit 130/143.

    ``{signal}`` in ``message`` names the signal (``Ctrl-C`` for SIGINT, else ``SIGTERM``). A second signal during the exit is ignored, so
    the line is never cut short. Outside the main thread the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise) for signum in SIGNALS}
    try:
        yield
    except Interrupted as exc:
        for signum in SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        sys.stderr.write(message.format(signal=exc.spoken) + "\n")
        sys.stderr.flush()
        raise SystemExit(exc.exit_code) from None
    finally:
        for signum, handler in previous.items():
            if signal.getsignal(signum) is _raise:
                signal.signal(signum, handler)


def interruptible(message: str = "Interrupted by {signal}; nothing was written.") -> Callable[[F], F]:
    """Decorator form of :func:`exit_on_signals`, for a command's function."""

    def wrap(command: F) -> F:
        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            with exit_on_signals(message):
                return command(*args, **kwargs)

        return run  # type: ignore[return-value]

    return wrap
