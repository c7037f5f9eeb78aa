"""`python -m emulators`: the env file and the CA folder it leaves (nothing), as the README uses it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests

from emulators._server import LocalCA
from emulators.amplitude import AmplitudeEmulator
from emulators.pipeline import Emulators
from emulators.salesforce import SalesforceEmulator

ROOT = Path(__file__).resolve().parents[2]
STALE = "export SALESFORCE_EMULATOR_URL=https://127.0.0.1:{port}\nexport AMPLITUDE_EMULATOR_URL=https://127.0.0.1:{port}\n"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def readme_start_block() -> str:
    """The README's lines that start the emulators and source emulators.env, as written."""
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"^```sh\n(.*?)^```$", readme, re.M | re.S) if "--env-file" in b)
    lines = block.splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith(". ./emulators.env"))
    return "\n".join(line for line in lines[: end + 1] if line != "make install")


def test_a_leftover_env_file_does_not_break_the_readme_block(tmp_path):
    # A killed emulator (kill -9, a closed terminal) leaves emulators.env behind, naming ports
    # nobody listens on any more; the README's block must still reach this run's emulators.
    (tmp_path / "emulators.env").write_text(STALE.format(port=closed_port()))
    script = readme_start_block().replace(".venv/bin/python", sys.executable)
    script = (
        "set -eu\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
        + script
        + '\ncurl -sS --fail --cacert "$REQUESTS_CA_BUNDLE" "$SALESFORCE_EMULATOR_URL/__emulator/info" >/dev/null'
        + '\ncurl -sS --fail --cacert "$REQUESTS_CA_BUNDLE" "$AMPLITUDE_EMULATOR_URL/__emulator/metrics" >/dev/null'
        + "\necho reached\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    run = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "reached"


def test_a_start_removes_a_leftover_env_file_before_it_listens(tmp_path):
    # Even a start that then fails (its port taken) has removed the stale file first.
    env_file = tmp_path / "emulators.env"
    env_file.write_text(STALE.format(port=closed_port()))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "emulators",
                "--salesforce-port",
                str(busy.getsockname()[1]),
                "--amplitude-port",
                "0",
                "--env-file",
                str(env_file),
            ],
            cwd=ROOT,
            env={**os.environ, "TMPDIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert run.returncode != 0
    assert not env_file.exists()


def test_stopping_leaves_no_env_file_and_no_ca_folder(tmp_path):
    env_file = tmp_path / "emulators.env"
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulators",
            "--salesforce-port",
            "0",
            "--amplitude-port",
            "0",
            "--env-file",
            str(env_file),
            "--accounts",
            "5",
        ],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(private_tmp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in (process.stdout.readline() for _ in range(3))
        )
        ca = Path(exports["REQUESTS_CA_BUNDLE"].strip())
        assert ca.parent.parent == private_tmp
        url = exports["SALESFORCE_EMULATOR_URL"].strip()
        assert requests.get(f"{url}/__emulator/info", verify=str(ca), timeout=30).status_code == 200
        assert env_file.read_text().splitlines()[0].startswith("export SALESFORCE_EMULATOR_URL=")
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert process.returncode == 0
    assert not env_file.exists()
    assert list(private_tmp.iterdir()) == []  # the CA's temporary folder went with it


def test_in_process_emulators_remove_their_ca_folder_at_stop(tmp_path):
    with Emulators(accounts=2) as emulators:
        shared = emulators.ca.directory
        assert (shared / "ca.pem").exists()
    assert not shared.exists()
    alone = SalesforceEmulator(accounts=1).start()
    own = alone.ca.directory
    alone.stop()
    assert not own.exists()
    named = LocalCA(tmp_path / "ca")  # a folder the user named (--ca-dir) keeps its ca.pem
    with AmplitudeEmulator(ca=named):
        pass
    named.close()
    assert (tmp_path / "ca" / "ca.pem").exists()
