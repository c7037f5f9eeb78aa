"""An Amplitude emulator for the target tests, and a way to run the target on Singer lines."""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.amplitude import API_KEY, AmplitudeEmulator
from target_amplitude_groups.target import TargetAmplitudeGroups
from tests.conftest import AMPLITUDE

# Side files of in-process runs go to a temporary folder, not the checkout's output/.
SIDE_FILES = Path(tempfile.mkdtemp(prefix="target-side-files-"))
BASE_CONFIG = {
    "api_key": API_KEY,
    "api_url": f"{AMPLITUDE.url}/groupidentify",
    "max_backoff": 0,  # retries at once: the tests need no real backoff
    "rejected_file": str(SIDE_FILES / "rejected.jsonl"),
}


@pytest.fixture
def amplitude() -> Iterator[AmplitudeEmulator]:
    AMPLITUDE.reset()
    yield AMPLITUDE
    AMPLITUDE.reset()


def singer(*messages: dict) -> str:
    return "".join(json.dumps(m) + "\n" for m in messages)


def run_target(config: dict, lines: str, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    """Run the target in-process on Singer lines; return the STATE messages it wrote.

    A failed run raises its :class:`RunFailure` (the CLI turns it into one line and an exit code).
    """
    target = TargetAmplitudeGroups(config={**BASE_CONFIG, **config}, validate_config=True)
    target.listen(io.StringIO(lines))
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.strip()]
