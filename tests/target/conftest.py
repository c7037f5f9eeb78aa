"""An Amplitude emulator for the target tests, and a way to run the target on Singer lines."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from emulators.amplitude import API_KEY, AmplitudeEmulator
from target_amplitude_groups.target import TargetAmplitudeGroups
from tests.conftest import AMPLITUDE

BASE_CONFIG = {"api_key": API_KEY, "api_url": f"{AMPLITUDE.url}/groupidentify", "max_backoff": 0.05}


@pytest.fixture
def amplitude() -> Iterator[AmplitudeEmulator]:
    AMPLITUDE.reset()
    yield AMPLITUDE
    AMPLITUDE.reset()


def singer(*messages: dict) -> str:
    return "".join(json.dumps(m) + "\n" for m in messages)


def run_target(config: dict, lines: str, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    """Run the target in-process on Singer lines; return the STATE messages it wrote."""
    target = TargetAmplitudeGroups(config={**BASE_CONFIG, **config}, validate_config=True)
    target.listen(io.StringIO(lines))
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.strip()]
