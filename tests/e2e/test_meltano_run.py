"""The real `meltano run` of the pair against both emulators.

What Amplitude ends up holding must be exactly what the Salesforce rows and the mapping imply.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators._server import Fault
from emulators.pipeline import PROJECT_ROOT, TAP_TARGET, Emulators, meltano
from tests.mappings import document, group
from tests.support.expected import DEMO_MAPPING, amplitude_value, expected_groups, sent_groups
from tests.support.project import STATE_ID, run_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(
    meltano_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Emulators, dict[str, str]]]:
    with Emulators(accounts=150, page_size=40) as emu:
        directory = tmp_path_factory.mktemp("meltano")
        yield emu, run_env(meltano_env, emu, directory, TARGET_AMPLITUDE_GROUPS_DELETED_RECORDS="unset")


def run(env: dict[str, str], check: bool = True) -> Any:
    return meltano("--environment=demo", "run", *TAP_TARGET, env=env, check=check)


def state(env: dict[str, str]) -> dict[str, Any]:
    return json.loads(meltano("state", "get", STATE_ID, env=env).stdout)


def test_full_then_incremental_run(project: tuple[Emulators, dict[str, str]]) -> None:
    emu, env = project
    org = emu.salesforce.org
    result = run(env)
    assert "Summary: " in result.stderr + result.stdout
    assert emu.amplitude.groups() == expected_groups(org)
    assert emu.amplitude.metrics()["rejected"] == 0

    # Nothing changed: no Amplitude request at all, though many rows share the bookmark's stamp.
    before = len(emu.amplitude.requests)
    run(env)
    assert len(emu.amplitude.requests) == before

    accounts = org.rows("Account", include_deleted=False)
    subscription = org.rows("Subscription__c", include_deleted=False)[0]
    org.update("Account", accounts[0]["Id"], Name="Renamed — ünïcødé", AnnualRevenue=12.5)
    org.update("Account", accounts[1]["Id"], Industry=None)
    org.soft_delete("Account", accounts[2]["Id"])
    new_id = org.insert("Account", {"Name": "Fresh Co", "OwnerId": accounts[0]["OwnerId"]})
    org.update("Subscription__c", subscription["Id"], Plan__c="Enterprise")
    run(env)
    assert sent_groups(emu.amplitude, before) == {
        ("org id", accounts[0]["Id"]),
        ("org id", accounts[1]["Id"]),
        ("org id", accounts[2]["Id"]),
        ("org id", new_id),
        ("subscription", subscription["Name"]),
    }
    groups = emu.amplitude.groups()
    # the soft-deleted account had its mapped properties unset (deleted_records=unset)
    assert groups["org id"][accounts[2]["Id"]] == {}
    assert groups == expected_groups(org)


def test_failed_delivery_keeps_the_bookmark(project: tuple[Emulators, dict[str, str]]) -> None:
    emu, env = project
    run(env)
    bookmark = state(env)
    target_id = emu.salesforce.org.rows("Account", include_deleted=False)[5]["Id"]
    emu.salesforce.org.update("Account", target_id, Name="Will fail")
    emu.amplitude.faults.add(Fault(status=503, count=1000, path="/groupidentify"))
    result = run({**env, "TARGET_AMPLITUDE_GROUPS_MAX_RETRIES": "1"}, check=False)
    emu.amplitude.faults.clear()
    assert result.returncode != 0
    assert "No STATE was emitted for unacknowledged records" in result.stderr + result.stdout
    assert state(env) == bookmark
    run(env)  # the next run sends what the failed one could not
    assert emu.amplitude.groups()["org id"][target_id]["account name"] == "Will fail"


def test_bulk_commits_per_window_through_meltano(project: tuple[Emulators, dict[str, str]]) -> None:
    # Issue 7.3 through Meltano's state store: Bulk queries have no ORDER BY, so a Bulk read
    # stopped part-way keeps the bookmark of its last completed window, and the next run sends
    # exactly the rest. Three failed jobs make windows of an eighth of the history; the third
    # window's results are refused with REQUEST_LIMIT_EXCEEDED, which stops the tap (exit 1).
    emu, env = project
    org = emu.salesforce.org
    bulk = {**env, "TAP_SALESFORCE_GROUPS_API_TYPE": "bulk"}
    emu.salesforce.faults.add(Fault(kind="bulk_job_failed", path="/jobs/query", count=3))
    emu.salesforce.faults.add(Fault(kind="request_limit", path="/results", after=2))
    before = len(emu.amplitude.requests)
    stopped = meltano("--environment=demo", "run", "--full-refresh", *TAP_TARGET, env=bulk, check=False)
    emu.salesforce.faults.clear()
    assert stopped.returncode != 0
    assert "REQUEST_LIMIT_EXCEEDED" in stopped.stderr + stopped.stdout
    jobs = [r["query"] for r in emu.salesforce.requests if r["path"].endswith("/jobs/query")]
    assert jobs and not [q for q in jobs if "ORDER BY" in q]
    bookmark = state(env)["singer_state"]["bookmarks"]["Account"]["replication_key_value"]
    stamp = {r["Id"]: amplitude_value(r["SystemModstamp"]) for r in org.rows("Account", include_deleted=True)}
    assert min(stamp.values()) < bookmark < max(stamp.values())
    sent = {value for kind, value in sent_groups(emu.amplitude, before) if kind == "org id"}
    assert sent == {i for i, s in stamp.items() if s < bookmark}  # the two windows, nothing more

    middle = len(emu.amplitude.requests)
    run(bulk)
    rest = {value for kind, value in sent_groups(emu.amplitude, middle) if kind == "org id"}
    assert rest == {i for i, s in stamp.items() if s >= bookmark}
    assert emu.amplitude.groups() == expected_groups(org)


def test_no_secret_in_meltano_output(project: tuple[Emulators, dict[str, str]]) -> None:
    emu, env = project
    org = emu.salesforce.org
    org.update("Account", org.rows("Account", include_deleted=False)[7]["Id"], Name="Needs sending")
    result = run({**env, "TARGET_AMPLITUDE_GROUPS_API_KEY": "zz-secret-key-zz"}, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "check api_key" in output
    assert "zz-secret-key-zz" not in output
    assert "emulator-client-secret" not in output and "emulator-refresh-token" not in output
    assert Path(PROJECT_ROOT / ".meltano").exists()


def test_mapping_commands_through_meltano_invoke(
    project: tuple[Emulators, dict[str, str]], tmp_path: Path
) -> None:
    _, env = project

    def invoke(*args: str, extra: dict[str, str] | None = None) -> Any:
        return meltano("--environment=demo", "invoke", *args, env={**env, **(extra or {})}, check=False)

    validate = invoke("tap-salesforce-groups-mapping:validate")
    assert validate.returncode == 0
    assert "Mapping OK: 2 mappings, 13 group properties." in validate.stdout
    export = invoke("tap-salesforce-groups-mapping:export")
    assert json.loads(export.stdout) == DEMO_MAPPING
    verify = invoke("tap-salesforce-groups-mapping:verify")
    assert verify.returncode == 0
    assert "Mapping verified against the org: OK (2 objects" in verify.stdout
    scaffold = invoke(
        "tap-salesforce-groups-mapping:scaffold",
        "--object",
        "User",
        "--group-type",
        "owner",
        "--fields",
        "Email,Department",
    )
    assert scaffold.returncode == 0, scaffold.stderr
    assert json.loads(scaffold.stdout)["mappings"][-1]["properties"][0]["field"] == "Email"

    broken = tmp_path / "broken.json"
    typo = {
        "object": "Accountt",
        "group_type": "other",
        "group_name_field": "Id",
        "properties": [{"field": "Name"}],
    }
    broken.write_text(
        json.dumps(
            document(group("Account", "org id", "Id", (("Nmae", "name"), ("Owner.Nope", "owner"))), typo)
        )
    )
    failed = invoke(
        "tap-salesforce-groups-mapping:verify", extra={"TAP_SALESFORCE_GROUPS_MAPPING_FILE": str(broken)}
    )
    assert failed.returncode != 0
    output = failed.stdout + failed.stderr
    for line in (
        "Account: no field 'Nmae' on Account",
        "Account: no field 'Nope' on User (in 'Owner.Nope')",
        "Accountt: no such object, or not visible to this user",
    ):
        assert line in output


def test_request_limit_keeps_the_progress_made(project: tuple[Emulators, dict[str, str]]) -> None:
    emu, env = project
    emu.salesforce.faults.add(Fault(kind="request_limit", path="/query/", count=1))
    args = ("--environment=demo", "run", "--state-id-suffix=limit", *TAP_TARGET)
    result = meltano(*args, env=env, check=False)
    assert result.returncode != 0
    assert "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded." in result.stdout + result.stderr
    saved = json.loads(meltano("state", "get", f"{STATE_ID}:limit", env=env).stdout)["singer_state"]
    # the first page of Accounts (40 rows) was delivered and its bookmark kept; nothing after it
    first_page = sorted(emu.salesforce.org.rows("Account"), key=lambda r: (r["SystemModstamp"], r["Id"]))[:40]
    assert saved["bookmarks"]["Account"]["replication_key_value"] == amplitude_value(
        first_page[-1]["SystemModstamp"]
    )
    assert not saved["bookmarks"].get("Subscription__c")
