"""`meltano invoke tap-salesforce-groups:editor`: the Meltano command, with the project's schedule."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from emulators.pipeline import PROJECT_ROOT, Emulators

pytestmark = pytest.mark.e2e


def test_meltano_command_serves_the_editor_with_the_projects_schedule(
    meltano_env: dict[str, str], tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'meltano.db'}"
    mapping = tmp_path / "mapping.json"
    mapping.write_text((PROJECT_ROOT / "demo" / "mapping.json").read_text())
    with Emulators(accounts=5) as emu:
        env = {
            **os.environ,
            **meltano_env,
            **emu.env(),
            "MELTANO_DATABASE_URI": db,
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "TAP_SALESFORCE_GROUPS_MAPPING_FILE": str(mapping),
        }
        args = ["--environment=demo", "invoke", "tap-salesforce-groups:editor", "--no-browser", "--port", "0"]
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("meltano")), *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: the test's "Ctrl-C" reaches all of it
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("Mapping editor: http://127.0.0.1:"), line
            url = line.split(": ", 1)[1].strip()
            base, token = url.split("/?token=")
            headers = {"X-Editor-Token": token}
            # Meltano sets MELTANO_PROJECT_ROOT: the cadence control finds the project's schedule.
            schedule = requests.get(f"{base}/api/schedule", headers=headers, timeout=30).json()
            runner = schedule.pop("runs_it")
            assert schedule == {
                "available": True,
                "project": str(PROJECT_ROOT / "meltano.yml"),
                "schedules": ["salesforce-to-amplitude"],
                "cadence": "daily",
            }
            # `make test` installs Dagster (make install-orchestrate), so the checkout's code location runs it.
            assert runner["runner"] == (
                "dagster" if (PROJECT_ROOT / ".venv/bin/dagster").exists() else "cron"
            )
            got = requests.get(f"{base}/api/mapping", headers=headers, timeout=30).json()
            assert got["mapping_file"] == str(mapping)
            verified = requests.post(
                f"{base}/api/verify", data=mapping.read_text(), headers=headers, timeout=60
            )
            assert verified.json()["problems"] == []
        finally:
            os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
            out, err = process.communicate(timeout=60)
    # Meltano itself answers Ctrl-C with click's one line "Aborted!" and status 1; the editor
    # under it stops too (its port is closed) and nothing prints a traceback.
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] in ("Aborted!", "Mapping editor stopped by Ctrl-C.")
    assert process.returncode in (0, 1, 130)
    assert out == ""
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/api/schedule", headers=headers, timeout=5)


def test_demo_editor_command_runs_until_ctrl_c(meltano_env: dict[str, str]) -> None:
    # meltano_env: the checkout's plugins are installed, which the demo's scratch copy links to.
    from emulators.demo import EDITOR_COMMAND

    # What `make demo` prints at the end, with --no-browser and a free port.
    command = [sys.executable, "-m", "emulators.demo", "--editor", "--no-browser", "--port", "0"]
    assert EDITOR_COMMAND == ".venv/bin/python -m emulators.demo --editor"
    process = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        lines: list[str] = []
        assert process.stdout is not None
        while not (line := process.stdout.readline()).startswith("Mapping editor: "):
            assert line, f"no editor URL; output so far: {lines}"
            lines.append(line)
        assert any(line.startswith("Salesforce emulator: https://127.0.0.1:") for line in lines)
        url = line.split(": ", 1)[1].strip()
        base, token = url.split("/?token=")
        got = requests.get(f"{base}/api/mapping", headers={"X-Editor-Token": token}, timeout=30).json()
        assert got["mapping"] == json.loads((PROJECT_ROOT / "demo" / "mapping.json").read_text())
        assert got["mapping_file"] != str(PROJECT_ROOT / "demo" / "mapping.json")  # a copy
    finally:
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out.strip().splitlines()[-1] == "Editor demo finished; emulator stopped."
    assert "Traceback" not in err
