"""Refresh token rotation through the real `meltano run`, which logs the tap in twice per run.

Discovery, then sync: with rotation on, every login after the first must send the token the
previous one received (Salesforce Help 005316711, "Refresh Token Rotation": each exchange issues
a new refresh token and invalidates the previous one; reusing an invalidated one revokes all).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulators.pipeline import TAP_TARGET, Emulators, meltano
from emulators.salesforce import REFRESH_TOKEN

pytestmark = pytest.mark.e2e


def test_meltano_run_twice_with_refresh_token_rotation(meltano_env: dict[str, str], tmp_path: Path) -> None:
    token_file = tmp_path / "project" / "refresh-token.json"
    with Emulators(accounts=30, rotate_refresh_tokens=True) as emu:
        env = {
            **meltano_env,
            **emu.env(),
            "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
            "TAP_SALESFORCE_GROUPS_REFRESH_TOKEN_FILE": str(token_file),
        }
        tokens = emu.salesforce.auth.refresh_tokens
        outputs, rotations = [], 0
        for _ in (1, 2):
            result = meltano("--environment=demo", "run", *TAP_TARGET, env=env, check=False)
            outputs.append(result.stdout + result.stderr)
            assert result.returncode == 0, outputs[-1][-3000:]
            assert tokens.revocations == 0
            assert tokens.rotations > rotations  # each login rotated (discovery is cached on run 2)
            rotations = tokens.rotations
        assert rotations >= 3  # the first run logged in twice: discovery, then sync
        assert len(emu.amplitude.groups()["org id"]) == 30
        assert token_file.stat().st_mode & 0o777 == 0o600
        (entry,) = json.loads(token_file.read_text()).values()
        assert tokens.valid(entry["refresh_token"])  # the file holds the one live token
        for output in outputs:
            assert entry["refresh_token"] not in output
            assert REFRESH_TOKEN not in output
