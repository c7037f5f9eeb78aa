"""What a run did: counters shared by the sink threads, the summary line and the run report."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields
from typing import Any


def count(n: int, one: str, many: str | None = None) -> str:
    """``1 group``, ``2 groups``: a number with its noun in the right form."""
    return f"{n} {one if n == 1 else many or one + 's'}"


@dataclass
class RunStats:
    """Counters for the summary line, the progress lines and the run report (thread-safe adds)."""

    groups_sent: int = 0
    requests: int = 0
    retries: int = 0
    throttled_seconds: float = 0.0
    skipped: int = 0
    rejected: int = 0
    values_rejected: int = 0
    deleted_ignored: int = 0
    truncated: int = 0
    checkpoints: int = 0
    concurrency: int = 0  # requests allowed in flight now (adapts to throttling; 0: dry run)
    lowest_concurrency: int = 0  # the lowest it went
    max_concurrency: int = 0  # the setting
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: float) -> None:
        """Add to counters."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def set(self, **values: float) -> None:
        """Set values."""
        with self._lock:
            for name, value in values.items():
                setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        """The counters for the run report."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        data["throttled_seconds"] = round(self.throttled_seconds, 3)
        return data

    def summary(self) -> str:
        """The counts of the end-of-run summary line, in words."""
        return ", ".join(
            [
                count(self.groups_sent, "group") + " sent in " + count(self.requests, "request"),
                count(self.retries, "retry", "retries"),
                f"{self.throttled_seconds:.1f}s throttled",
                f"{self.skipped} skipped",
                f"{self.rejected} rejected",
                count(self.values_rejected, "value") + " refused",
                count(self.deleted_ignored, "deleted row") + " ignored",
                count(self.truncated, "value") + " truncated",
                *([self.concurrency_text()] if self.concurrency else []),
            ]
        )

    def concurrency_text(self) -> str:
        """``concurrency 16``, or after throttling ``concurrency 6 of 16 (lowest 2)``."""
        text = f"concurrency {self.concurrency}"
        if self.concurrency < self.max_concurrency or self.lowest_concurrency < self.concurrency:
            text += f" of {self.max_concurrency}"
        if self.lowest_concurrency < self.concurrency:
            text += f" (lowest {self.lowest_concurrency})"
        return text
