"""Issue 17, points 10 and 11, through the real `meltano run`.

10. Ctrl-C in a terminal sends SIGINT to the whole foreground process group: Meltano, the tap
    and the target, in whatever order they see it (and Meltano then terminates its plugins).
    The run must stop promptly with no traceback and no hang, keep STATE only for what
    Amplitude acknowledged, and the next run must send exactly the rest.
11. After `kill -9` of `meltano` itself, Meltano refuses the next run of the same state id for
    about 5 minutes (its job heartbeat goes stale after HEARTBEAT_VALID_MINUTES = 5, meltano
    core/job/job.py); `--force` runs it, as the README's Guarantees table says.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from emulators.pipeline import PROJECT_ROOT, TAP_TARGET, Emulators, meltano
from tap_salesforce_groups.timestamps import parse_datetime
from tests.support.project import STATE_ID, run_env, start_run

pytestmark = pytest.mark.e2e

ACCOUNTS = 15_000  # a run of many batches: the signal lands after 3 checkpoints, 4 or more before the end
BATCH = 2_000  # checkpoints every 2,000 groups
TIMEOUT = 30  # the target's request_timeout
LOOKBACK = timedelta(seconds=600)  # the tap's lookback_seconds default


@pytest.fixture(scope="module")
def project(
    meltano_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Emulators, dict[str, str]]]:
    with Emulators(accounts=ACCOUNTS, page_size=2000) as emu:
        yield (
            emu,
            run_env(
                meltano_env,
                emu,
                tmp_path_factory.mktemp("meltano"),
                TARGET_AMPLITUDE_GROUPS_BATCH_SIZE_ROWS=str(BATCH),
                TARGET_AMPLITUDE_GROUPS_REQUEST_TIMEOUT=str(TIMEOUT),
            ),
        )


def saved_state(env: dict[str, str], suffix: str) -> dict[str, Any]:
    result = meltano("--environment=demo", "state", "get", f"{STATE_ID}:{suffix}", env=env, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        return {}
    return dict(json.loads(result.stdout).get("singer_state") or {})


def sent_accounts(emu: Emulators, since: int) -> list[str]:
    """The Account groups (group type 'org id') posted to Amplitude since request number ``since``."""
    return [
        ident["group_value"]
        for request in emu.amplitude.requests[since:]
        for ident in request["payload"] or []
        if ident["group_type"] == "org id"
    ]


def wait_for_requests(emu: Emulators, process: subprocess.Popen[str], count: int) -> None:
    deadline = time.monotonic() + 300
    while len(emu.amplitude.requests) < count:
        assert process.poll() is None, "the run ended before the signal"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)


def live_accounts_after(emu: Emulators, bookmark: dict[str, Any] | None) -> set[str]:
    """Live Accounts the next run must send.

    Those after the bookmark, and those in the look-back span before it (``lookback_seconds``, default 600)
    that the state does not remember emitting.
    """
    rows = emu.salesforce.org.rows("Account", include_deleted=False)
    if not bookmark:
        return {r["Id"] for r in rows}
    mark = parse_datetime(str(bookmark["replication_key_value"]))
    emitted = {k: parse_datetime(str(v)) for k, v in (bookmark.get("emitted") or {}).items()}
    wanted = set()
    for row in rows:
        stamp = parse_datetime(str(row["SystemModstamp"]))
        if stamp > mark or (stamp >= mark - LOOKBACK and emitted.get(row["Id"]) != stamp):
            wanted.add(row["Id"])
    return wanted


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_process_group_stops_cleanly_and_the_next_run_sends_exactly_the_rest(project, signum):
    emu, env = project
    suffix = f"pg-{signum.name.lower()}"
    before = len(emu.amplitude.requests)
    process = start_run(env, suffix)
    try:
        wait_for_requests(emu, process, before + 3 * BATCH // 100)  # a few checkpoints in
        sent = time.monotonic()
        os.killpg(process.pid, signum)  # what a terminal does on Ctrl-C: the whole group
        output, _ = process.communicate(timeout=TIMEOUT + 60)  # a hang fails here
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode != 0
    assert "Traceback" not in output, output[-4000:]
    assert "BrokenPipeError" not in output
    assert "Exception ignored" not in output
    # Within seconds: the target used to wait 15 s for an end of input Meltano never gives (it
    # does not close the target's stdin when it terminates its plugins); 1.4 s on a quiet machine.
    assert took < 10, f"stopping took {took:.0f}s"
    interrupted = f"interrupted by {signum.name}"
    assert (
        len([line for line in output.splitlines() if f"target-amplitude-groups {interrupted}" in line]) <= 1
    )
    state = saved_state(env, suffix)
    bookmark = (state.get("bookmarks") or {}).get("Account")
    acknowledged_before_stop = set(sent_accounts(emu, before))
    # STATE covers only what Amplitude acknowledged: every Account up to the bookmark arrived.
    assert live_accounts_after(emu, None) - live_accounts_after(emu, bookmark) <= acknowledged_before_stop

    # The next run sends exactly the rest: the live Accounts after the saved bookmark.
    second = len(emu.amplitude.requests)
    result = meltano("--environment=demo", "run", f"--state-id-suffix={suffix}", *TAP_TARGET, env=env)
    assert result.returncode == 0
    resent = sent_accounts(emu, second)
    assert sorted(resent) == sorted(live_accounts_after(emu, bookmark))


def test_after_kill_9_of_meltano_the_next_run_is_refused_until_forced(project):
    emu, env = project
    before = len(emu.amplitude.requests)
    process = start_run(env, "killed")
    try:
        wait_for_requests(emu, process, before + 5)
        process.kill()  # kill -9 of meltano alone: it cannot mark its job as ended
        process.communicate(timeout=30)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the orphaned tap and target of the killed run
    refused = meltano(
        "--environment=demo", "run", "--state-id-suffix=killed", *TAP_TARGET, env=env, check=False
    )
    assert refused.returncode != 0
    text = refused.stdout + refused.stderr
    assert "pipeline is already running" in text and "'--force' option" in text
    forced = meltano("--environment=demo", "run", "--force", "--state-id-suffix=killed", *TAP_TARGET, env=env)
    assert forced.returncode == 0
    assert saved_state(env, "killed").get("bookmarks", {}).get("Account")


def test_the_guarantees_table_says_what_kill_9_of_meltano_does():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| `kill -9` of `meltano`"))
    assert "already running" in row and "--force" in row and "5 minutes" in row


def test_a_budget_stop_under_meltano_fails_the_run_reports_partial_and_reads_the_rest_first(
    project, tmp_path
):
    emu, env = project
    report = tmp_path / "report.json"
    extra = {
        "TAP_SALESFORCE_GROUPS_MAX_API_USAGE_PERCENT": "1",
        "TARGET_AMPLITUDE_GROUPS_REPORT_FILE": str(report),
    }
    # 1% of the org's limit is already used (earlier runs count too), and the limit is far away.
    emu.salesforce.api_max = 50 * (emu.salesforce.api_calls + 10)
    try:
        stopped = meltano(
            "--environment=demo",
            "run",
            "--state-id-suffix=budget",
            *TAP_TARGET,
            env={**env, **extra},
            check=False,
        )
    finally:
        emu.salesforce.api_max = 1_000_000
    assert stopped.returncode != 0  # the tap exited 75: not a success for cron or an orchestrator
    assert "Traceback" not in stopped.stdout + stopped.stderr
    saved = json.loads(report.read_text())
    assert saved["status"] == "partial" and "max_api_usage_percent" in saved["error"]
    state = saved_state(env, "budget")
    assert state["partial"]["unread"] == ["Subscription__c"]
    # The next run reads Subscription__c first and clears the mark in Meltano's stored state.
    done = meltano("--environment=demo", "run", "--state-id-suffix=budget", *TAP_TARGET, env={**env, **extra})
    log = done.stdout + done.stderr
    assert "Reading Subscription__c first" in log
    assert log.index("Beginning sync of 'Subscription__c'") < log.index("Beginning sync of 'Account'")
    assert json.loads(report.read_text())["status"] == "ok"
    assert saved_state(env, "budget").get("partial") is None
