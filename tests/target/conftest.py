"""An Amplitude emulator for the target tests, and a way to run the target on Singer lines."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator

import pytest

from emulators._server import LocalCA
from emulators.amplitude import API_KEY, AmplitudeEmulator
from target_amplitude_groups.target import TargetAmplitudeGroups

_CA = LocalCA()
# Started at import: the SDK's standard target suite needs the URL when the class is built.
AMPLITUDE = AmplitudeEmulator(ca=_CA).start()
os.environ["REQUESTS_CA_BUNDLE"] = str(_CA.ca_path)

BASE_CONFIG = {"api_key": API_KEY, "api_url": f"{AMPLITUDE.url}/groupidentify", "max_backoff": 0.05}


def pytest_sessionfinish() -> None:
    AMPLITUDE.stop()


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
