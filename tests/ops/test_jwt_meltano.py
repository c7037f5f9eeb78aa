"""The JWT bearer setup of docs/connect.md, command for command, in a fresh-clone-like copy of the project.

`meltano config set tap-salesforce-groups private_key "$(cat server.key)"` failed: Meltano's
command line (click) took the key's leading `-----BEGIN` for an option and exited 2. The doc's
command is read from docs/connect.md itself and run by a shell, so the two cannot drift apart; then
the refresh token a `connect` left is unset, and the tap logs in with the JWT bearer flow,
its multi-line key read back from `.env`.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.pipeline import Emulators, sealed_environ
from emulators.salesforce import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, USERNAME

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulators]:
    with Emulators(accounts=20) as emulators:
        yield emulators


def readme_command(project: Path, pattern: str) -> str:
    """docs/connect.md's inline command (in backticks) that matches ``pattern``."""
    text = re.sub(
        r"```.*?```", "", (project / "docs/connect.md").read_text(), flags=re.DOTALL
    )  # inline code only
    spans = (" ".join(span.split()) for span in re.findall(r"`([^`]+)`", text))  # wrapped lines joined
    commands = [c for c in spans if re.search(pattern, c)]
    assert len(commands) == 1, commands
    return commands[0]


def test_the_readmes_jwt_setup_logs_in_with_the_jwt_bearer_flow(
    project_copy: Path, emu: Emulators, tmp_path: Path
):
    env = {
        **sealed_environ(),
        **emu.env(),
        "PATH": f"{project_copy / '.venv' / 'bin'}:{sealed_environ().get('PATH', '')}",
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
    }

    def meltano(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["meltano", *args], cwd=project_copy, env=env, capture_output=True, text=True, check=False
        )

    # The org and the app, then what `connect` leaves behind: a refresh token in .env.
    for name, value in {
        "login_url": emu.salesforce.url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "mapping_file": "demo/mapping.json",
        "refresh_token": REFRESH_TOKEN,
    }.items():
        assert (
            meltano("config", "set", "--store=dotenv", "tap-salesforce-groups", name, value).returncode == 0
        )
    # The doc's steps: the key, the username, then the refresh token unset.
    (project_copy / "server.key").write_text(emu.salesforce.jwt_private_key_pem)
    command = readme_command(project_copy, r"private_key .*\$\(cat server\.key\)")
    key = subprocess.run(
        ["sh", "-c", command], cwd=project_copy, env=env, capture_output=True, text=True, check=False
    )
    # On failure Meltano echoes the value: say only how it failed, never the key.
    code, errors = (
        key.returncode,
        [line[:40] for line in key.stderr.splitlines() if line.startswith("Error:")],
    )
    del key
    assert code == 0, f"docs/connect.md's private_key command exited {code}: {errors}"
    username = readme_command(project_copy, r"--store=dotenv\s+tap-salesforce-groups username").replace(
        "…", USERNAME
    )
    assert subprocess.run(["sh", "-c", username], cwd=project_copy, env=env, check=False).returncode == 0
    unset = readme_command(project_copy, r"config unset\s+tap-salesforce-groups refresh_token")
    assert subprocess.run(["sh", "-c", unset], cwd=project_copy, env=env, check=False).returncode == 0
    dotenv = (project_copy / ".env").read_text()
    assert "TAP_SALESFORCE_GROUPS_REFRESH_TOKEN" not in dotenv
    assert "-----BEGIN PRIVATE KEY-----\n" in dotenv  # the key, as it is, lines and all

    emu.salesforce.clear_requests()
    discover = meltano("invoke", "tap-salesforce-groups", "--discover")
    assert discover.returncode == 0, discover.stderr[-3000:]
    assert "Logged in to Salesforce (jwt flow)" in discover.stderr
    grants = [r for r in emu.salesforce.requests if r["path"] == "/services/oauth2/token"]
    assert [r["status"] for r in grants] == [200]
    assert "BEGIN PRIVATE KEY" not in discover.stdout + discover.stderr
