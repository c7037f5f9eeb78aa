"""Why a run fails: each error is one line for the log and carries the process exit code."""

from __future__ import annotations


class RunFailure(Exception):
    """The run cannot do what was asked; STATE stays at the last acknowledged checkpoint."""

    exit_code = 1


class AmplitudeError(RunFailure):
    """Delivery failed for good; the message says why (and never contains the API key)."""


class InvalidApiKey(AmplitudeError):
    """Amplitude refused the API key: nothing can be sent."""


class Unreachable(AmplitudeError):
    """TLS, DNS or connection failures that no retry can fix."""


class Stopped(AmplitudeError):
    """The run is stopping (a signal): no further attempt is made."""


class TooManyRejected(RunFailure):
    """More identifications were rejected than ``max_rejected`` allows."""


class StreamMismatch(RunFailure):
    """A stream's SCHEMA cannot serve its mapping (a mapped field it does not have)."""


class Interrupted(RunFailure):
    """SIGINT or SIGTERM: reading stopped; the exit code is 128 + the signal number."""

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(f"interrupted by {name}")
        self.exit_code = 128 + signum
