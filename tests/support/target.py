"""The target's test settings (against the session's Amplitude emulator) and an in-process run."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from emulators.amplitude import API_KEY
from target_amplitude_groups.target import TargetAmplitudeGroups
from tests.support.emulators import SESSION, Session

BASE_CONFIG: dict[str, Any] = {
    "api_key": API_KEY,
    "api_url": "https://127.0.0.1:9/groupidentify",  # the emulator's, set when it starts (below)
    "max_backoff": 0,  # retries at once: the tests need no real backoff
    # Side files of in-process runs go to the session's temporary folder, not the checkout's output/.
    "rejected_file": "",
}


def _fill(session: Session) -> None:
    assert session.amplitude is not None and session.directory is not None
    BASE_CONFIG["api_url"] = f"{session.amplitude.url}/groupidentify"
    BASE_CONFIG["rejected_file"] = str(session.directory / "side-files" / "rejected.jsonl")


SESSION.when_started(_fill)


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
