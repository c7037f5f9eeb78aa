"""Progress of reading one object: rows read out of the COUNT() total, rate and time left.

Logged through the stream's logger (stderr; stdout carries the Singer messages) at INFO, every
``interval`` seconds from a timer thread, so a line appears even while a page is slow to come,
and once when the object is finished.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

DEFAULT_INTERVAL = 30.0


def _duration(seconds: float) -> str:
    """``0.4s``, ``42s``, ``3m05s`` or ``2h07m``."""
    if seconds < 10:
        return f"{max(0.0, seconds):.1f}s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts the rows of one object as they are read and reports them."""

    def __init__(
        self,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
        name: str,
        *,
        delivered: int = 0,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.name = name
        self.delivered = delivered  # Ids at the bookmark that the last run already sent
        self.interval = DEFAULT_INTERVAL if interval is None else interval
        self.clock = clock
        self.total: int | None = None
        self.read = 0
        self.started: float | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def expect(self, rows: int, bulk_from: int) -> bool:
        """Record the COUNT() of rows to read, say how they will be read; True when through Bulk.

        The line names the API the rows are then read with (Bulk API 2.0 from ``bulk_from`` rows,
        REST below), and how many of them the last run already delivered.
        """
        self.total = rows
        bulk = rows >= bulk_from
        how = "Bulk API 2.0 (bulk_threshold" if bulk else "REST (Bulk API 2.0 from bulk_threshold"
        if self.delivered:
            self.logger.info(
                "%s: %d rows to read, %d of them already delivered by the last run and skipped; "
                "through %s %d)",
                self.name,
                rows,
                min(self.delivered, rows),
                how,
                bulk_from,
            )
        else:
            self.logger.info("%s: %d rows to read through %s %d)", self.name, rows, how, bulk_from)
        return bulk

    def line(self) -> str:
        """``Account: 120000/200000 rows read (60%), 5100 rows/s, about 16s left``."""
        elapsed = self.clock() - (self.started if self.started is not None else self.clock())
        rate = self.read / elapsed if elapsed > 0 else 0.0
        text = f"{self.name}: {self.read}"
        if self.total:
            text += f"/{self.total} rows read ({min(100, 100 * self.read // self.total)}%)"
        else:
            text += " rows read"
        text += f", {rate:.0f} rows/s"
        if self.total and rate > 0:
            text += f", about {_duration(max(0, self.total - self.read) / rate)} left"
        return text

    def track(self, rows: Iterable[T]) -> Iterator[T]:
        """Yield ``rows``, counting them; logs the final line when they are exhausted."""
        if self.started is None:
            self.started = self.clock()
        self._start_ticker()
        finished = False
        try:
            for row in rows:
                self.read += 1
                yield row
            finished = True
        finally:
            self._stop_ticker()
            if finished:
                elapsed = self.clock() - self.started
                rate = self.read / elapsed if elapsed > 0 else 0.0
                self.logger.info(
                    "%s: finished, %d rows read in %s (%.0f rows/s)",
                    self.name,
                    self.read,
                    _duration(elapsed),
                    rate,
                )

    def _start_ticker(self) -> None:
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick, name=f"progress-{self.name}", daemon=True)
        self._ticker.start()

    def _stop_ticker(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self.logger.info(self.line())
