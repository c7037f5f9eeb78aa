"""Reading one page ahead keeps the source's order, its errors and its early stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tap_salesforce_groups.prefetch import Prefetcher, prefetch


class Boom(Exception):
    pass


def test_items_arrive_in_order_and_all_of_them() -> None:
    assert list(prefetch(range(1000), ahead=2)) == list(range(1000))


def test_an_error_arrives_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise Boom("page 3 failed")

    pages = prefetch(source())
    assert [next(pages), next(pages)] == [1, 2]
    with pytest.raises(Boom, match="page 3 failed"):
        next(pages)


def test_stopping_early_reads_at_most_one_item_more_and_closes_the_source() -> None:
    read: list[int] = []
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            for i in range(100):
                read.append(i)
                yield i
        finally:
            closed.set()

    pages = prefetch(source(), ahead=1)
    assert next(pages) == 0
    pages.close()  # type: ignore[attr-defined]
    assert closed.is_set()
    assert len(read) <= 3  # the one used, one queued, at most one being read when told to stop


def test_the_source_runs_in_another_thread() -> None:
    def source() -> Iterator[str]:
        yield threading.current_thread().name

    assert list(prefetch(source(), name="pages")) == ["pages"]


def test_stopping_while_the_source_waits_on_a_request_does_not_wait_for_it() -> None:
    """A stop on a signal must not wait out a slow request.

    Close() returns at once, and the thread closes the source after that request ends.
    """
    waiting, release, closed = threading.Event(), threading.Event(), threading.Event()

    def source() -> Iterator[int]:
        try:
            yield 0
            waiting.set()
            release.wait()  # a slow request
            yield 1
        finally:
            closed.set()

    prefetcher = Prefetcher(source(), ahead=1)
    pages = iter(prefetcher)
    assert next(pages) == 0
    assert waiting.wait(timeout=60)
    prefetcher.close()
    assert not closed.is_set()  # the request is still in flight; close() did not wait for it
    release.set()
    assert closed.wait(timeout=60)
