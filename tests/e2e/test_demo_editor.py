"""The demo editor (`python -m emulators.demo --editor`) never writes the checkout's meltano.yml.

Its Sync cadence control edits a scratch copy, and the page says what would run it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from emulators.pipeline import PROJECT_ROOT, sealed_environ

pytestmark = pytest.mark.e2e


def test_the_demo_editor_sets_the_cadence_of_a_scratch_copy(meltano_env: dict[str, str]) -> None:
    # meltano_env: the checkout's plugins are installed, which the scratch copy links to.
    checkout = (PROJECT_ROOT / "meltano.yml").read_bytes()
    process = subprocess.Popen(
        [sys.executable, "-m", "emulators.demo", "--editor", "--no-browser"],
        cwd=PROJECT_ROOT,
        env={**sealed_environ(), "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the test's "Ctrl-C" reaches all of it
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Mapping editor: http://127.0.0.1:"):
                break
        assert "scratch copy of meltano.yml" in "".join(lines), lines
        base, token = lines[-1].split(": ", 1)[1].strip().split("/?token=")
        headers = {"X-Editor-Token": token}
        answer = requests.put(f"{base}/api/schedule", json={"cadence": "hourly"}, headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
        scratch = answer.json()["project"]
        assert scratch != str(PROJECT_ROOT / "meltano.yml") and scratch.endswith("/project/meltano.yml")
        assert answer.json()["runs_it"]["runner"] == "cron"  # the scratch project has no code location
        assert "interval: '@hourly'" in Path(scratch).read_text(encoding="utf-8")
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        process.communicate(timeout=120)
    assert (PROJECT_ROOT / "meltano.yml").read_bytes() == checkout
