"""The session's emulators, started here (not at import), and reset around each test that uses one.

The helpers the tests share are plain modules in tests/support/; test modules import them from
there, never from a conftest.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from emulators.amplitude import AmplitudeEmulator
from emulators.salesforce import SalesforceEmulator
from tests.support.emulators import SESSION, Session


@pytest.fixture(scope="session", autouse=True)
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """Both emulators, one CA in REQUESTS_CA_BUNDLE, for the whole session."""
    SESSION.start(tmp_path_factory.mktemp("emulators"))
    yield SESSION
    SESSION.stop()


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


@pytest.fixture
def amplitude() -> Iterator[AmplitudeEmulator]:
    emulator = SESSION.amplitude
    assert emulator is not None
    emulator.reset()
    yield emulator
    emulator.reset()
