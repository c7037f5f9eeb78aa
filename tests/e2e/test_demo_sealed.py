"""Issue 6, point 6: `make demo` can only ever talk to its loopback emulators.

A hostile `.env` (a real-looking key, a blank api_url that would mean api2.amplitude.com) and
hostile TAP_/TARGET_ variables in the shell (a login URL at a trap on loopback) must change
nothing: the demo succeeds against its emulators and nothing else is contacted.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

HOSTILE_DOTENV = """\
TARGET_AMPLITUDE_GROUPS_API_KEY=0f3c1e2d4b5a69788796a5b4c3d2e1f0
TARGET_AMPLITUDE_GROUPS_API_URL=
TAP_SALESFORCE_GROUPS_CLIENT_SECRET=3MVG9-real-looking-secret
"""


class Trap:
    """A TCP listener on loopback that counts every connection made to it."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


def test_the_demo_ignores_dotenv_and_plugin_variables(project_copy: Path) -> None:
    # In a copy of the project: its .env is the hostile one (a developer's own .env, and
    # Meltano runs of other tests in the checkout at the same time, never see it).
    (project_copy / ".env").write_text(HOSTILE_DOTENV)
    trap = Trap()
    env = {
        **os.environ,
        "TAP_SALESFORCE_GROUPS_LOGIN_URL": f"https://127.0.0.1:{trap.port}",
        "TARGET_AMPLITUDE_GROUPS_API_URL": f"https://127.0.0.1:{trap.port}/groupidentify",
        "TARGET_AMPLITUDE_GROUPS_API_KEY": "0f3c1e2d4b5a69788796a5b4c3d2e1f0",
        "MELTANO_ENVIRONMENT": "prod",
    }
    try:
        result = subprocess.run(
            [sys.executable, "-m", "emulators.demo"],  # the copy's emulators.demo (cwd comes first)
            cwd=project_copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        trap.socket.close()
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert trap.connections == 0
    assert "group type 'org id'" in result.stdout
    assert "0f3c1e2d4b5a69788796a5b4c3d2e1f0" not in result.stdout + result.stderr
    assert (project_copy / ".meltano" / "run").is_dir()  # Meltano ran in the copy, beside its .env
    # README: the demo leaves no process behind (emulators, Meltano, the plugins).
    deadline = time.monotonic() + 10
    while (left := processes_in(project_copy)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left


def processes_in(folder: Path) -> list[str]:
    """The processes (other than this one) running in ``folder`` or naming it in their command line."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if command and (Path(cwd).is_relative_to(folder) or str(folder) in command):
            found.append(f"{proc.name}: {command[:200]}")
    return found


def test_sealed_environ_drops_plugin_and_meltano_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from emulators.pipeline import sealed_environ

    monkeypatch.setenv("TARGET_AMPLITUDE_GROUPS_API_URL", "https://api2.amplitude.com/groupidentify")
    monkeypatch.setenv("tap_salesforce_groups_login_url", "https://login.salesforce.com")
    monkeypatch.setenv("MELTANO_DATABASE_URI", "postgresql://prod")
    monkeypatch.setenv("HOME", str(Path.home()))
    sealed = sealed_environ()
    assert not [k for k in sealed if k.upper().startswith(("TAP_SALESFORCE", "TARGET_AMPLITUDE", "MELTANO_"))]
    assert sealed["HOME"] == str(Path.home())
