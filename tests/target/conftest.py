"""The session's Amplitude emulator, reset around each target test (helpers: tests.support.target)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulators.amplitude import AmplitudeEmulator
from tests.support.emulators import SESSION


@pytest.fixture
def amplitude() -> Iterator[AmplitudeEmulator]:
    emulator = SESSION.amplitude
    assert emulator is not None
    emulator.reset()
    yield emulator
    emulator.reset()
