"""What a Meltano user tries first.

`.env.example` copied as is, and the mapping commands through the real `meltano invoke`, against the
emulators. No traceback on any bad input.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.pipeline import PROJECT_ROOT, TAP_TARGET, Emulators, meltano

pytestmark = pytest.mark.e2e

PLUGIN = "tap-salesforce-groups-mapping"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulators]:
    with Emulators(accounts=40) as emulators:
        yield emulators


@pytest.fixture
def env(emu: Emulators, meltano_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    emu.salesforce.reset()
    return {**meltano_env, **emu.env(), "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}"}


def logins(emu: Emulators) -> int:
    return sum("/services/oauth2/token" in r["path"] for r in emu.salesforce.requests)


def invoke(env: dict[str, str], command: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    result = meltano(
        "--environment=demo", "invoke", f"{PLUGIN}:{command}", *args, env={**env, **extra}, check=False
    )
    assert "Traceback" not in result.stdout + result.stderr
    return result


def messages(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The plugin's stderr lines as Meltano relays them (after its `[level] meltano` prefix)."""
    lines = []
    for line in result.stderr.splitlines():
        _, sep, rest = line.partition(" meltano ")
        if sep and not rest.lstrip().startswith(("Meltano ", "Environment ")):
            lines.append(rest.strip())
    return lines


def test_env_example_copied_as_is_changes_nothing(project_copy: Path, emu: Emulators, tmp_path: Path):
    shutil.copy(project_copy / ".env.example", project_copy / ".env")
    run_env = {
        **os.environ,
        **emu.env(),
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'copy.db'}",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    meltano_bin = str(project_copy / ".venv" / "bin" / "meltano")
    for args in (
        ("config", "list", "tap-salesforce-groups"),
        ("config", "list", "target-amplitude-groups"),
        ("--environment=demo", "run", *TAP_TARGET),
    ):
        result = subprocess.run(
            [meltano_bin, *args], cwd=project_copy, env=run_env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, (args, result.stderr[-3000:])
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("plugin", ["extractors/tap-salesforce-groups", "loaders/target-amplitude-groups"])
def test_plugins_are_installed_with_their_bytecode_compiled(meltano_env, plugin):
    # uv, Meltano's installer, compiles no bytecode unless told (meltano.yml: UV_COMPILE_BYTECODE).
    # Where Python may not write it at run time (PYTHONDONTWRITEBYTECODE, a read-only install),
    # every plugin start compiled every module again: 0.85 s instead of 0.37 s, three per run.
    # A module the plugin never imports has bytecode only if the install compiled it.
    site = next((PROJECT_ROOT / ".meltano" / plugin / "venv" / "lib").glob("python3.*/site-packages"))
    never_imported = site / "singer_sdk" / "testing" / "suites.py"
    assert never_imported.is_file()
    assert Path(importlib.util.cache_from_source(str(never_imported))).is_file()


def test_validate_and_export_never_log_in(env, emu):
    result = invoke(env, "validate")
    assert result.returncode == 0
    assert result.stdout == "Mapping OK: 2 mappings, 13 group properties.\n"
    exported = invoke(env, "export")
    assert exported.returncode == 0
    assert json.loads(exported.stdout)["mappings"][0]["object"] == "Account"
    assert logins(emu) == 0
    assert not emu.salesforce.requests  # not even discovery


def test_validate_lists_each_problem_on_one_line(env, emu, tmp_path):
    bad = tmp_path / "mapping.json"
    bad.write_text(
        json.dumps(
            {
                "mappings": [
                    {"object": "Account", "group_type": "x", "group_name_field": "Id", "propertes": []}
                ]
            }
        )
    )
    result = invoke(env, "validate", TAP_SALESFORCE_GROUPS_MAPPING_FILE=str(bad))
    assert result.returncode == 1
    assert messages(result) == [
        f"{bad} is invalid (2 problems):",
        "- 1: Account -> x: unknown key 'propertes' (did you mean 'properties'?)",
        "- 1: Account -> x: group mapping has no group properties",
    ]
    assert not emu.salesforce.requests


def test_scaffold_write_starts_from_no_mapping_file(env, emu, tmp_path):
    for start in ("missing", "empty"):
        path = tmp_path / f"{start}.json"
        if start == "empty":
            path.write_text("\n")
        result = invoke(
            env,
            "scaffold",
            "--object=Account",
            "--group-type=org id",
            "--fields=Name,Owner.Name",
            "--write",
            TAP_SALESFORCE_GROUPS_MAPPING_FILE=str(path),
        )
        assert result.returncode == 0, messages(result)
        assert messages(result) == [f"Added 'Account -> org id' (2 properties) to {path}"]
        written = json.loads(path.read_text())
        assert written["mappings"] == [
            {
                "object": "Account",
                "group_type": "org id",
                "group_name_field": "Id",
                "properties": [
                    {"field": "Name", "property": "Account Name"},
                    {"field": "Owner.Name", "property": "Owner Full Name"},
                ],
            }
        ]
        validated = invoke(env, "validate", TAP_SALESFORCE_GROUPS_MAPPING_FILE=str(path))
        assert validated.stdout == "Mapping OK: 1 mappings, 2 group properties.\n"


def test_verify_logs_in_once(env, emu):
    result = invoke(env, "verify")
    assert result.returncode == 0, messages(result)
    assert result.stdout == "Mapping verified against the org: OK (2 objects, one row of each read).\n"
    assert logins(emu) == 1


def test_verify_lists_each_org_problem_on_one_line(env, emu, tmp_path):
    path = tmp_path / "mapping.json"
    path.write_text(
        json.dumps(
            {
                "mappings": [
                    {
                        "object": "Account",
                        "group_type": "org id",
                        "group_name_field": "Id",
                        "properties": [{"field": "Nmae"}, {"field": "Owner.Nope"}],
                    }
                ]
            }
        )
    )
    # Both plugins read the mapping (verify checks that they read the same one).
    result = invoke(
        env,
        "verify",
        TAP_SALESFORCE_GROUPS_MAPPING_FILE=str(path),
        TARGET_AMPLITUDE_GROUPS_MAPPING_FILE=str(path),
    )
    assert result.returncode == 1
    assert messages(result) == [
        "mapping does not match the Salesforce org:",
        "- Account: no field 'Nmae' on Account",
        "- Account: no field 'Nope' on User (in 'Owner.Nope')",
    ]
    assert logins(emu) == 1


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            {"TAP_SALESFORCE_GROUPS_CLIENT_SECRET": "wrong"},
            "failed: invalid_client: invalid client credentials",
        ),
        (
            {
                "TAP_SALESFORCE_GROUPS_LOGIN_URL": "https://127.0.0.1:9",
                "TAP_SALESFORCE_GROUPS_MAX_RETRIES": "0",
            },
            "Salesforce login: connection refused by 127.0.0.1:9",
        ),
    ],
    ids=["wrong-secret", "salesforce-down"],
)
def test_verify_login_problems_are_one_line(env, override, expected):
    result = invoke(env, "verify", **override)
    assert result.returncode == 1
    assert any(expected in line for line in messages(result)), messages(result)
    assert "emulator-client-secret" not in result.stdout + result.stderr


def test_failed_login_leaves_no_unclosed_file(env):
    """Meltano passes --state to discovery; exiting on a bad login used to leak that file."""
    meltano("--environment=demo", "run", *TAP_TARGET, env=env)  # a state to pass
    result = meltano(
        "--environment=demo",
        "run",
        *TAP_TARGET,
        env={
            **env,
            "TAP_SALESFORCE_GROUPS_CLIENT_SECRET": "wrong",
            "PYTHONWARNINGS": "always::ResourceWarning",
        },
        check=False,
    )
    assert result.returncode == 1
    assert "invalid_client" in result.stderr
    assert "ResourceWarning" not in result.stderr


def test_incremental_rows_to_read_says_what_was_delivered(env):
    meltano("--environment=demo", "run", *TAP_TARGET, env=env)
    again = meltano("--environment=demo", "run", *TAP_TARGET, env=env)
    line = next(line for line in again.stderr.splitlines() if "Account: " in line and "rows to read" in line)
    assert "rows to read, " in line
    assert "of them already delivered by the last run and skipped" in line
