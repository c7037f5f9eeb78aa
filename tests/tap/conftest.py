"""The session's Salesforce emulator, reset around each tap test (helpers: tests.support.tap)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from emulators.salesforce import SalesforceEmulator
from tests.support.emulators import SESSION


@pytest.fixture
def salesforce() -> Iterator[SalesforceEmulator]:
    emulator = SESSION.salesforce
    assert emulator is not None
    emulator.reset()
    yield emulator
    # A read stopped early leaves its prefetch thread to finish the request in flight (the tap
    # does not wait for it): let it end here, so that it does not land in the next test's log.
    for thread in threading.enumerate():
        if thread.name.endswith(("-pages", "-bulk")):
            thread.join(timeout=60)
    emulator.reset()
    emulator.query_timeout_rows, emulator.sandbox, emulator.api_max = None, False, 1_000_000
    emulator.rotate_refresh_tokens = False
