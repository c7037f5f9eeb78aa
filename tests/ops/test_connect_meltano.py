"""`meltano invoke tap-salesforce-groups-mapping:connect`, then `meltano run` with no other step.

In a fresh-clone-like copy of the project: connect stores the refresh token in the project's
.env (which Meltano reads, and which wins over meltano.yml's config), and the next run logs in
with it; the emulator honours no other refresh token by then.
"""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.pipeline import TAP_TARGET, Emulators, sealed_environ
from emulators.salesforce import REFRESH_TOKEN
from tap_salesforce_groups.connect import ENV_NAME
from tests.tap.test_connect import LINE, browser_login

pytestmark = pytest.mark.e2e
CONNECT_ARGS = ("--no-browser", "--port", "0")


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulators]:
    with Emulators(accounts=20) as emulators:
        yield emulators


def _connect(meltano: str, project: Path, env: dict[str, str], emu: Emulators) -> str:
    """Run connect under Meltano, log in as the browser would; the stored refresh token."""
    process = subprocess.Popen(
        [meltano, "--environment=demo", "invoke", "tap-salesforce-groups-mapping:connect", *CONNECT_ARGS],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    assert process.stderr is not None
    for line in process.stderr:
        seen.append(line)
        if "Log in to Salesforce at: " in line:
            url = line.split("Log in to Salesforce at: ", 1)[1].split()[0]
            break
    else:
        raise AssertionError("".join(seen))
    assert browser_login(url, verify=str(emu.ca.ca_path)).status_code == 200
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, "".join(seen) + err
    assert LINE in out
    env_file = project / ".env"
    token = next(x.split("=", 1)[1] for x in env_file.read_text().splitlines() if x.startswith(ENV_NAME))
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert token not in out + err + "".join(seen)
    return token


def _run(meltano: str, project: Path, env: dict[str, str], emu: Emulators) -> None:
    emu.salesforce.clear_requests()
    run = subprocess.run(
        [meltano, "--environment=demo", "run", *TAP_TARGET],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert any(r["path"] == "/services/oauth2/token" and r["status"] == 200 for r in emu.salesforce.requests)


def test_connect_then_meltano_run(project_copy: Path, emu: Emulators, tmp_path: Path):
    env = {
        **sealed_environ(),
        **emu.env(),
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    meltano = str(project_copy / ".venv" / "bin" / "meltano")
    yml_before = (project_copy / "meltano.yml").read_text()
    first = _connect(meltano, project_copy, env, emu)
    # Only the new token works now: meltano.yml's demo refresh_token would be refused.
    emu.salesforce.auth.refresh_tokens.revoke(REFRESH_TOKEN)
    emu.salesforce.auth.refresh_tokens.rotate = True  # the run keeps a rotated token in its file
    _run(meltano, project_copy, env, emu)
    assert emu.amplitude.requests  # something was sent
    # Connecting again (a new user, say): the token in .env wins over the one rotated from the
    # first, which the app revokes now.
    second = _connect(meltano, project_copy, env, emu)
    assert second != first
    emu.salesforce.auth.refresh_tokens.revoke_family_of(first)
    _run(meltano, project_copy, env, emu)
    assert (project_copy / "meltano.yml").read_text() == yml_before
