"""Issue 6 through the real `meltano run`, where Meltano's state handling is part of the behaviour.

Points 1, 2, 4, 5, 9 and 11: Meltano stores each STATE line the target writes, so the
bookmark moves exactly as far as the target let STATE through.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators._server import Fault
from emulators.pipeline import TAP_TARGET, Emulators, meltano
from tests.support.project import STATE_ID, run_env, start_run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(
    meltano_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Emulators, dict[str, str]]]:
    with Emulators(accounts=150, page_size=40) as emu:
        yield emu, run_env(meltano_env, emu, tmp_path_factory.mktemp("meltano"))


def run(env: dict[str, str], suffix: str, **extra: str) -> subprocess.CompletedProcess[str]:
    args = ("--environment=demo", "run", f"--state-id-suffix={suffix}", *TAP_TARGET)
    return meltano(*args, env={**env, **extra}, check=False)


def bookmarks(env: dict[str, str], suffix: str) -> dict[str, Any] | None:
    result = meltano("--environment=demo", "state", "get", f"{STATE_ID}:{suffix}", env=env, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        return None
    return json.loads(result.stdout).get("singer_state", {}).get("bookmarks")


def prepare(emu: Emulators, env: dict[str, str], suffix: str) -> dict[str, Any] | None:
    """A good run, then one changed row: what a failed run must leave as it was."""
    assert run(env, suffix).returncode == 0
    before = bookmarks(env, suffix)
    org = emu.salesforce.org
    org.update("Account", org.rows("Account", include_deleted=False)[3]["Id"], Name=f"changed for {suffix}")
    return before


def test_1_a_request_refused_as_a_whole_fails_the_run_and_keeps_the_bookmark(project):
    emu, env = project
    # A first import (every group) against an Amplitude that refuses every request.
    emu.amplitude.faults.add(Fault(status=400, count=10_000, path="/groupidentify", body="invalid_request"))
    try:
        result = run(env, "refused")
    finally:
        emu.amplitude.faults.clear()
    assert result.returncode != 0
    assert "refused a request as a whole (HTTP 400: invalid_request)" in result.stdout + result.stderr
    assert bookmarks(env, "refused") is None


def test_2_a_dry_run_never_moves_the_bookmark(project, tmp_path: Path):
    emu, env = project
    requests_before = len(emu.amplitude.requests)
    dry = tmp_path / "dry.jsonl"
    result = run(
        env, "dry", TARGET_AMPLITUDE_GROUPS_DRY_RUN="true", TARGET_AMPLITUDE_GROUPS_DRY_RUN_FILE=str(dry)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(emu.amplitude.requests) == requests_before
    assert dry.read_text().count("\n") > 0
    assert bookmarks(env, "dry") is None  # Meltano stored no state at all
    # so the next real run still sends every group
    assert run(env, "dry").returncode == 0
    assert len(emu.amplitude.requests) > requests_before


def test_4_checkpoints_keep_progress_when_a_run_dies_late(project):
    emu, env = project
    extra = {"TARGET_AMPLITUDE_GROUPS_BATCH_SIZE_ROWS": "20", "TARGET_AMPLITUDE_GROUPS_MAX_RETRIES": "0"}
    # How many requests the Account stream takes (the tap sends Account, then Subscription__c).
    first = len(emu.amplitude.requests)
    assert run(env, "calibrate", **extra).returncode == 0
    accounts = sum(
        1
        for r in emu.amplitude.requests[first:]
        if r["payload"] and r["payload"][0]["group_type"] == "org id"
    )
    # Account is delivered and checkpointed; Amplitude then fails for good during Subscription__c.
    emu.amplitude.faults.add(Fault(count=accounts, path="/groupidentify"))  # answered normally
    emu.amplitude.faults.add(Fault(status=503, count=10_000, path="/groupidentify"))
    try:
        result = run(env, "checkpoint", **extra)
    finally:
        emu.amplitude.faults.clear()
    assert result.returncode != 0
    assert "Checkpoint: " in result.stdout + result.stderr
    saved = bookmarks(env, "checkpoint")
    assert saved is not None and saved["Account"].get("replication_key_value")
    assert not saved.get("Subscription__c", {}).get("replication_key_value")


def test_4b_with_requests_in_flight_together_checkpoints_keep_progress(project):
    emu, env = project
    # test_4 at the default concurrency, requests in flight together (150 ms each): every
    # Subscription__c request fails wherever it arrives, so no arrival order matters. Account's
    # checkpoints are kept, Subscription__c's bookmark does not move.
    extra = {"TARGET_AMPLITUDE_GROUPS_BATCH_SIZE_ROWS": "20", "TARGET_AMPLITUDE_GROUPS_MAX_RETRIES": "0"}
    emu.amplitude.set_latency(0.15)
    emu.amplitude.fail_requests_carrying(r["Name"] for r in emu.salesforce.org.rows("Subscription__c"))
    try:
        result = run(env, "in-flight", **extra)
    finally:
        emu.amplitude.reset()
    assert result.returncode != 0
    assert "Checkpoint: " in result.stdout + result.stderr
    saved = bookmarks(env, "in-flight")
    assert saved is not None and saved["Account"].get("replication_key_value")
    assert not saved.get("Subscription__c", {}).get("replication_key_value")


def test_5_sigterm_fails_the_run_and_keeps_only_acknowledged_progress(project):
    emu, env = project
    before = prepare(emu, env, "sigterm")
    # A hung Amplitude: each answer comes 10 s late (the SIGTERM lands 0.5 s into the first; the
    # target waits for what is in flight, within request_timeout=30, then stops without STATE).
    emu.amplitude.faults.add(Fault(delay=10, count=10_000, path="/groupidentify"))
    process = start_run(env, "sigterm")
    try:
        deadline = time.monotonic() + 120
        while emu.amplitude.faults.pending() and emu.amplitude.faults.pending()[0].count == 10_000:
            assert time.monotonic() < deadline, "no request reached Amplitude"
            time.sleep(0.1)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=90)
    finally:
        emu.amplitude.faults.clear()
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0, output[-3000:]
    assert bookmarks(env, "sigterm") == before


def test_9_a_negative_max_retries_is_refused_at_start(project):
    emu, env = project
    before = prepare(emu, env, "retries")
    requests_before = len(emu.amplitude.requests)
    result = run(env, "retries", TARGET_AMPLITUDE_GROUPS_MAX_RETRIES="-1")
    assert result.returncode != 0
    assert "max_retries" in result.stdout + result.stderr
    assert len(emu.amplitude.requests) == requests_before
    assert bookmarks(env, "retries") == before


def test_11_a_2xx_that_is_not_amplitudes_success_answer_keeps_the_bookmark(project):
    emu, env = project
    before = prepare(emu, env, "html")
    page = "<html><title>Proxy sign-in</title></html>"
    emu.amplitude.faults.add(Fault(status=200, count=10_000, path="/groupidentify", body=page))
    try:
        result = run(env, "html")
    finally:
        emu.amplitude.faults.clear()
    assert result.returncode != 0
    assert "without Amplitude's success answer" in result.stdout + result.stderr
    assert bookmarks(env, "html") == before
