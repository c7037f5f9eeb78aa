"""The Dagster code location end to end (orchestrate/dagster/).

Every shard of a three-object mapping materialised in parallel by Dagster's multiprocess executor, Meltano's state and run
history in a PostgreSQL server of the test's own, one shard SIGKILLed part-way and retried, and a
second schedule tick after org changes.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators._server import Fault
from emulators.pipeline import Emulators, meltano
from emulators.postgres import LocalPostgres
from tests.support.expected import amplitude_value, expected_groups
from tests.support.project import clone_like
from tests.support.shards import MAPPING, SHARDS, mapping_env, state, write_mapping

dg = pytest.importorskip("dagster", reason="Dagster is not installed (make install-orchestrate)")
psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (make install)")

pytestmark = pytest.mark.e2e

BASE = "demo:tap-salesforce-groups-to-target-amplitude-groups"
ACCOUNTS = 16_000  # more than the SDK's 10,000 rows between two STATE messages: one checkpoint mid-read
LOOKBACK = 600  # lookback_seconds: reads start this far behind the bookmark


def load_location(project: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The code location loaded as `dagster dev` would, in ``project`` with ``env`` only."""
    for name in [n for n in os.environ if n.startswith(("TAP_", "TARGET_", "MELTANO_", "ORCHESTRATE_"))]:
        monkeypatch.delenv(name)
    full = {
        "MELTANO_PROJECT_ROOT": str(project),
        "MELTANO_ENVIRONMENT": "demo",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DAGSTER_HOME": str(project / ".dagster"),
        "ORCHESTRATE_PLAN": "",  # derived afresh by this load (and removed afterwards)
        **env,
    }
    (project / ".dagster").mkdir(exist_ok=True)
    for name, value in full.items():
        monkeypatch.setenv(name, value)
    name = "orchestrate.dagster.definitions"
    return importlib.reload(sys.modules[name]) if name in sys.modules else importlib.import_module(name)


@pytest.fixture
def location(
    meltano_env: dict[str, str], postgres: LocalPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """The code location in a copy of the project, against the emulators and Postgres."""
    project = clone_like(tmp_path / "project")
    mapping = write_mapping(tmp_path)
    with Emulators(accounts=ACCOUNTS) as emu:
        env = {
            **emu.env(),
            **mapping_env(mapping),
            "MELTANO_DATABASE_URI": postgres.uri,
            "TARGET_AMPLITUDE_GROUPS_BATCH_SIZE_ROWS": "500",
            "ORCHESTRATE_MAX_PARALLEL_SHARDS": "3",
            "ORCHESTRATE_AMPLITUDE_CONCURRENCY": "6",
            "ORCHESTRATE_SHARD_RETRIES": "2",
            "ORCHESTRATE_RETRY_DELAY": "3",
            "TAP_SALESFORCE_GROUPS_LOOKBACK_SECONDS": str(LOOKBACK),
        }
        module = load_location(project, env, monkeypatch)
        yield {"emu": emu, "env": {**env, "MELTANO_ENVIRONMENT": "demo"}, "module": module, "pg": postgres}


def tick(module: Any, instance: Any, hour: int = 0) -> Any:
    """One tick of the code location's schedule at ``hour`` UTC, executed as the daemon would launch it."""
    schedule = module.defs.resolve_schedule_def(module.JOB)
    when = dt.datetime(2026, 12, 5, hour, tzinfo=dt.timezone.utc)
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=when) as context:
        data = schedule.evaluate_tick(context)
    (request,) = data.run_requests
    return dg.execute_job(
        dg.reconstructable(module.salesforce_to_amplitude_job),
        instance=instance,
        tags=request.tags,
        run_config=request.run_config,
    )


def db_state(uri: str, state_id: str) -> dict[str, Any]:
    """The state Meltano holds for ``state_id`` right now (read from Postgres, not via meltano)."""
    with psycopg.connect(uri.replace("postgresql+psycopg://", "postgresql://")) as conn:
        row = conn.execute(
            "SELECT partial_state, completed_state FROM state WHERE state_id = %s", (state_id,)
        ).fetchone()
    if row is None:
        return {}
    merged: dict[str, Any] = {}
    for part in row:  # completed, then the partial state written since
        value = json.loads(part) if isinstance(part, str) else part
        if value:
            merged.setdefault("bookmarks", {}).update((value.get("singer_state") or {}).get("bookmarks", {}))
    return merged


def shard_process(suffix: str, marker: str) -> int | None:
    """The pid of the `meltano run` of one shard, started by this test (its environment has ``marker``)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if f"--state-id-suffix={suffix}".encode() not in cmdline or b"meltano" not in cmdline:
                continue
            if marker.encode() in (proc / "environ").read_bytes():
                return int(proc.name)
        except OSError:
            continue
    return None


def sent(amplitude: Any, since: int, group_type: str) -> set[str]:
    return {
        i["group_value"]
        for r in amplitude.requests[since:]
        if r["status"] == 200
        for i in r["payload"]
        if i["group_type"] == group_type
    }


def run_windows(uri: str) -> dict[str, tuple[Any, Any]]:
    """Meltano's run history in Postgres: each shard's first run, (started_at, ended_at)."""
    with psycopg.connect(uri.replace("postgresql+psycopg://", "postgresql://")) as conn:
        rows = conn.execute("SELECT job_name, started_at, ended_at FROM runs ORDER BY id").fetchall()
    windows: dict[str, tuple[Any, Any]] = {}

    def aware(when: Any) -> Any:  # Meltano stores UTC, without the offset
        return when.replace(tzinfo=dt.timezone.utc) if when is not None and when.tzinfo is None else when

    for job_name, started, ended in rows:
        windows.setdefault(job_name, (aware(started), aware(ended)))
    return windows


def test_dagster_runs_the_shards_in_parallel_with_state_in_postgres(location: dict[str, Any]) -> None:
    emu: Emulators = location["emu"]
    module, pg = location["module"], location["pg"]
    org, amplitude = emu.salesforce.org, emu.amplitude
    started = time.monotonic()

    # The code location made one asset per object of the mapping, and follows meltano.yml's cadence.
    assert sorted(a.key.path[0] for a in module.defs.assets) == sorted(
        f"amplitude_groups_{s}" for s in SHARDS
    )
    assert module.defs.resolve_schedule_def(module.JOB).cron_schedule == "0 * * * *"  # checks hourly
    plan = json.loads(os.environ["ORCHESTRATE_PLAN"])
    assert plan["parallel"] == 3 and plan["per_shard_concurrency"] == 2  # 6 requests in flight at most

    # Tick 1, the first import. Amplitude answers slowly enough that the Account shard is still
    # sending when its first checkpoint (10,000 rows) reaches Postgres: then it is SIGKILLed.
    amplitude.faults.add(Fault(delay=0.25, count=10**6, path="/groupidentify"))
    killed: dict[str, Any] = {}

    def kill_account_after_its_checkpoint() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and "Account" not in db_state(pg.uri, f"{BASE}:account").get(
            "bookmarks", {}
        ):
            time.sleep(0.05)
        pid = shard_process("account", pg.uri)
        if pid is None:
            return
        os.killpg(pid, signal.SIGKILL)  # meltano, the tap and the target: the shard's own session
        killed["at"] = dt.datetime.now(dt.timezone.utc)
        # Requests already on the wire land, and a state write whose COMMIT was already sent is
        # committed by the server, before the retry starts (3 s later): then the state is final.
        time.sleep(1.5)
        killed["state"] = db_state(pg.uri, f"{BASE}:account")
        killed["mark"] = len(amplitude.requests)

    killer = threading.Thread(target=kill_account_after_its_checkpoint, daemon=True)
    killer.start()
    instance = dg.DagsterInstance.get()
    result = tick(module, instance)
    killer.join(timeout=60)
    amplitude.faults.clear()
    first_tick = time.monotonic() - started
    assert result.success
    assert "state" in killed, "the Account shard finished before its first checkpoint"
    retried = [e.step_key for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retried == ["amplitude_groups_account"]  # only the killed shard ran again

    # Its rerun sent exactly what its last checkpoint did not cover: every row from the bookmark
    # less the look-back, except those the state remembers as already sent at their stamp.
    entry = killed["state"]["bookmarks"]["Account"]
    mark_value = entry["replication_key_value"]
    emitted = entry.get("emitted")
    sent_at: dict[str, str] = dict(emitted[0] if isinstance(emitted, list) and emitted else emitted or {})
    sent_at.update(dict.fromkeys(entry.get("ids_at_bookmark") or [], mark_value))
    lower = dt.datetime.fromisoformat(mark_value) - dt.timedelta(seconds=LOOKBACK)
    rest = set()
    for record in org.rows("Account", include_deleted=True):
        stamp = str(amplitude_value(record["SystemModstamp"]))  # the tap's format: ms, UTC offset
        if dt.datetime.fromisoformat(stamp) >= lower and sent_at.get(record["Id"]) != stamp:
            rest.add(record["Id"])
    assert 0 < len(rest) < ACCOUNTS
    assert sent(amplitude, killed["mark"], "org id") == rest

    # Amplitude equals the org; each shard's state is in Postgres under its own id.
    assert amplitude.groups() == expected_groups(org, MAPPING)
    ids = meltano("state", "list", env=location["env"]).stdout.split()
    assert sorted(ids) == sorted(f"{BASE}:{s}" for s in SHARDS)
    # The shards ran at the same time: each one's `meltano run` overlapped another's (run history).
    # (The killed run never recorded an end: it ran until the kill.)
    windows = {
        job: (start, end or killed["at"])
        for job, (start, end) in run_windows(pg.uri).items()
        if job.startswith(BASE)
    }
    assert len(windows) == 3
    for job, (start, end) in windows.items():
        others = [w for j, w in windows.items() if j != job]
        assert any(start < o_end and o_start < end for o_start, o_end in others), windows

    # Tick 2 after a few org changes: exactly the changed rows are sent, one shard each.
    accounts = org.rows("Account", include_deleted=False)
    subscription = org.rows("Subscription__c", include_deleted=False)[5]
    contact = org.rows("Contact", include_deleted=False)[3]["Id"]
    org.update("Account", accounts[10]["Id"], Name="Renamed between ticks")
    org.soft_delete("Account", accounts[11]["Id"])
    org.update("Subscription__c", subscription["Id"], Plan__c="Enterprise")
    org.update("Contact", contact, Title="CFO")
    before = {s: state(location["env"], f"{BASE}:{s}") for s in SHARDS}
    mark = len(amplitude.requests)
    second = time.monotonic()
    assert tick(module, instance).success
    second_tick = time.monotonic() - second
    assert sent(amplitude, mark, "org id") == {accounts[10]["Id"], accounts[11]["Id"]}
    assert sent(amplitude, mark, "subscription") == {subscription["Name"]}
    assert sent(amplitude, mark, "contact") == {contact}
    assert all(state(location["env"], f"{BASE}:{s}") != before[s] for s in SHARDS)
    assert amplitude.groups() == expected_groups(org, MAPPING)

    # Tick 3, the org's daily API usage already past the budget (max_api_usage_percent): each
    # shard's tap stops cleanly, its state saved, and `meltano run` fails. The step is not retried:
    # a retry a minute later would meet the same budget (docs/operations.md, ORCHESTRATE_SHARD_RETRIES).
    emu.salesforce.api_max = 50 * (emu.salesforce.api_calls + 10)  # about 2% used, many calls left
    os.environ["TAP_SALESFORCE_GROUPS_MAX_API_USAGE_PERCENT"] = "1"  # the shards inherit it
    try:
        budget = tick(module, instance)
    finally:
        emu.salesforce.api_max = 1_000_000
        del os.environ["TAP_SALESFORCE_GROUPS_MAX_API_USAGE_PERCENT"]
    assert not budget.success
    assert not [e for e in budget.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    failures = [
        e.event_specific_data.error.message for e in budget.all_events if e.event_type_value == "STEP_FAILURE"
    ]
    assert len(failures) == len(SHARDS) and all("stopped early, not retried" in f for f in failures), failures
    print(
        f"\norchestrated test: first tick {first_tick:.1f}s (with the kill and retry), second {second_tick:.1f}s"
    )


def test_the_schedule_follows_the_editors_cadence(
    meltano_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The editor's Sync cadence control edits meltano.yml (ProjectSchedule); the loaded code
    # location's schedule follows it from the next tick, without a reload.
    from tap_salesforce_groups.editor.schedule import ProjectSchedule

    project = clone_like(tmp_path / "project")
    module = load_location(project, mapping_env(write_mapping(tmp_path)), monkeypatch)
    schedule = module.defs.resolve_schedule_def(module.JOB)
    instance = dg.DagsterInstance.get()  # DAGSTER_HOME: the copy's .dagster

    def decision(hour: int) -> str:
        when = dt.datetime(2026, 12, 5, hour, tzinfo=dt.timezone.utc)
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=when) as context:
            data = schedule.evaluate_tick(context)
        return "run" if data.run_requests else str(data.skip_message)

    assert decision(0) == "run"  # @daily, as shipped: midnight UTC only
    assert "daily" in decision(5)
    ProjectSchedule(str(project)).set("hourly")
    assert decision(5) == "run"
    ProjectSchedule(str(project)).set("daily")
    assert "daily" in decision(5)
