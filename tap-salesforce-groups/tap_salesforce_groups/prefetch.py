"""Read one page ahead: the next page downloads while the stream writes the current one."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_POLL_SECONDS = 0.1  # how often a blocked producer looks whether the consumer went away


class _End:
    """The producer is done (``error`` says why, if it failed)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Prefetcher(Generic[T]):
    """Iterates ``source`` in a thread, at most ``ahead`` items in front of the consumer.

    Items, and any exception the source raises, reach the consumer in the source's order, so
    a failure after a page still lets the consumer finish that page first. When the consumer
    stops early (``close()``, or the generator is closed), the thread stops before its next
    item: at most ``ahead`` items are read that nobody uses. The thread is a daemon, so a
    request still running when the process exits does not hold it up.
    """

    def __init__(
        self, source: Iterable[T], ahead: int = 1, name: str = "prefetch", join_seconds: float | None = None
    ) -> None:
        self._join_seconds = join_seconds
        self._source = source
        self._queue: queue.Queue[T | _End] = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._reading = False  # True while the producer waits on the source (a request in flight)
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: T | _End) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        iterator = iter(self._source)
        try:
            while not self._stop.is_set():
                self._reading = True
                try:
                    item = next(iterator)
                except StopIteration:
                    self._put(_End())
                    return
                finally:
                    self._reading = False
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(_End(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # a generator's finally blocks run in the thread that ran it

    def __iter__(self) -> Iterator[T]:
        try:
            while True:
                item = self._queue.get()
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    return
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the thread. One that waits to hand over an item ends within a poll and is joined.

        One waiting on the source (a request in flight) is not waited for: a stop on a signal must not wait
        out a slow request, and the thread ends after that request. With ``join_seconds`` the consumer waits
        up to that long in any case: the source's own cleanup (aborting a Bulk job) must run before the
        process exits.
        """
        self._stop.set()
        if self._thread is threading.current_thread():
            return
        if self._join_seconds is not None:
            self._thread.join(timeout=self._join_seconds)
        elif not self._reading:
            self._thread.join(timeout=2 * _POLL_SECONDS)


def prefetch(
    source: Iterable[T], ahead: int = 1, name: str = "prefetch", join_seconds: float | None = None
) -> Iterator[T]:
    """``source``'s items, read ``ahead`` items in advance in a background thread."""
    return iter(Prefetcher(source, ahead, name, join_seconds))
