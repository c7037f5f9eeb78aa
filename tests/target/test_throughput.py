"""Issue 20.

The target reads and delivers at the same time, and adapts its concurrency to Amplitude's throttling (AIMD).

Amplitude throttles past an org-wide rate of group identifies with 429 (``Retry-After``), or
with a 2xx whose JSON says ``"code": 429`` (docs/reference/amplitude-api.md, A5 and A6; RudderStack's
Amplitude handler treats the latter as retryable). The emulator's token bucket answers 429 with
``Retry-After`` as real throttling does; its latency switch makes each request a round trip.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators._server import Fault
from emulators.amplitude import AmplitudeEmulator
from target_amplitude_groups.client import GROWTH_ROUND_TRIPS, RECOVERY_ROUND_TRIPS, AdaptiveConcurrency
from target_amplitude_groups.errors import Stopped
from target_amplitude_groups.target import TargetAmplitudeGroups
from tests.support.emulators import CA
from tests.support.target import BASE_CONFIG
from tests.target.test_data_safety import state
from tests.target.test_target import MAPPING, STATE, record, schema_msg

TARGET_CLI = str(Path(sys.executable).with_name("target-amplitude-groups"))


def lines_of(*messages: dict) -> Iterator[str]:
    for message in messages:
        yield json.dumps(message) + "\n"


# -- reading and delivery overlap ---------------------------------------------------------------
def test_full_requests_go_out_while_the_batch_is_still_read(amplitude, capsys):
    sent_while_reading = threading.Event()

    def source() -> Iterator[str]:
        # 1,000 groups of 6 properties fill 5 requests, far from the 10,000-record batch, and no
        # STATE has come: a target that delivers only whole batches has sent nothing yet.
        yield from lines_of(schema_msg(), *[record(i) for i in range(1000)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if amplitude.metrics()["accepted"] >= 5:
                sent_while_reading.set()
                break
            time.sleep(0.02)
        yield from lines_of(STATE)

    target = TargetAmplitudeGroups(config={**BASE_CONFIG, "mapping": MAPPING}, validate_config=True)
    target.listen(source())  # type: ignore[arg-type]
    assert sent_while_reading.is_set()
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert out == [STATE["value"]]  # STATE only once the last, partly filled request was acknowledged
    assert len(amplitude.groups()["org id"]) == 1000
    sizes = [entry["identifications"] for entry in amplitude.requests]
    assert sizes == [170] * 5 + [150]  # the batch still ends with one partly filled request


def test_a_checkpoint_waits_for_the_records_before_its_state_while_reading_goes_on(amplitude, capsys, caplog):
    # Two batches of 50, each followed by its STATE; every request takes a second. A checkpoint
    # drains only once the requests before its STATE were answered, and reading goes on
    # meanwhile: the whole second batch is read, and its request made, while the first is in
    # flight. That request leaves as soon as the first STATE is written, not before (no request
    # overtakes a checkpoint). STATE still follows acknowledgement.
    caplog.set_level(logging.INFO)
    amplitude.set_latency(1.0)
    first, second = [record(i) for i in range(50)], [record(i) for i in range(50, 100)]
    pulled: list[float] = []

    def watched(lines: Iterator[str]) -> Iterator[str]:
        for line in lines:
            pulled.append(time.time())
            yield line

    target = TargetAmplitudeGroups(
        config={**BASE_CONFIG, "mapping": MAPPING, "batch_size_rows": 50}, validate_config=True
    )
    target.listen(watched(lines_of(schema_msg(), *first, state(1), *second, state(2))))  # type: ignore[arg-type]
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [m["bookmarks"]["Account"]["replication_key_value"] for m in out] == ["2025-01-01", "2025-01-02"]
    checkpoints = [r for r in caplog.records if r.getMessage().startswith("Checkpoint: ")]
    assert "STATE Account bookmark=2025-01-01" in checkpoints[0].getMessage()
    requests = sorted(amplitude.requests, key=lambda e: e["time"])
    assert [e["identifications"] for e in requests] == [50, 50]
    first_answered = requests[0]["time"]
    written = checkpoints[0].created
    assert first_answered <= written  # the first STATE followed its acknowledgement
    assert pulled[1 + 50 + 1 + 49] < first_answered  # the second batch was read meanwhile
    assert written <= requests[1]["arrived"]  # its request left once STATE 1 was written
    assert len(amplitude.groups()["org id"]) == 100


def test_a_checkpoint_counts_a_rejection_settled_before_its_drain_once(amplitude, tmp_path):
    # A request of a checkpoint's barrier is refused alone, and its answer is settled at the
    # next batch end, before the checkpoint's drain: the drain must not count it again.
    amplitude.faults.add(Fault(status=400, count=1, path="/groupidentify", body="bad group"))
    rejected = tmp_path / "rejected.jsonl"
    config = {**BASE_CONFIG, "mapping": MAPPING, "rejected_file": str(rejected)}
    target = TargetAmplitudeGroups(config=config, validate_config=True)
    delivery = target.delivery
    outbox = delivery.outbox()
    outbox.add({"group_type": "org id", "group_value": "1", "group_properties": {"$set": {"a": 1}}})
    outbox.end_record()
    outbox.end_batch()  # sent
    delivery.set_barrier()  # a STATE worth a checkpoint
    deadline = time.monotonic() + 10
    while not (delivery.barrier_answered() or time.monotonic() > deadline):
        time.sleep(0.01)
    outbox.end_batch()  # the next batch ends first: the answer is settled here
    outbox.finish()  # the checkpoint's drain
    assert delivery.client is not None
    delivery.client.close()
    assert target.stats.rejected == 1
    assert len(rejected.read_text().splitlines()) == 1


def test_a_group_sent_again_waits_for_its_earlier_request(amplitude, capsys):
    # Group 5 is in the first request; it comes again 450 records later, in the third request,
    # which fills while the first is still unanswered (a slow Amplitude). Sent at once, the
    # third could be applied first and the first would then put the older name back.
    amplitude.faults.add(Fault(delay=0.5, count=1, path="/groupidentify"))
    rows = [record(i) for i in range(600)]
    rows[450] = record(5, Name="renamed later")
    target = TargetAmplitudeGroups(config={**BASE_CONFIG, "mapping": MAPPING}, validate_config=True)
    target.listen(lines_of(schema_msg(), *rows, STATE))  # type: ignore[arg-type]
    assert amplitude.groups()["org id"]["001000000000000005"]["account name"] == "renamed later"
    assert sorted(entry["identifications"] for entry in amplitude.requests) == [90, 170, 170, 170]
    assert capsys.readouterr().out.strip() == json.dumps(STATE["value"])


def test_an_update_of_a_group_soon_after_is_merged_as_in_a_whole_batch(amplitude, capsys):
    # Within HOLD_RECORDS of its request filling, the group is merged: one identification, as
    # when the batch was packed whole (tests/unit/test_golden_bodies.py has such updates too).
    rows = [record(i) for i in range(400)]
    rows[250] = record(5, Name="renamed later")
    target = TargetAmplitudeGroups(config={**BASE_CONFIG, "mapping": MAPPING}, validate_config=True)
    target.listen(lines_of(schema_msg(), *rows, STATE))  # type: ignore[arg-type]
    assert amplitude.groups()["org id"]["001000000000000005"]["account name"] == "renamed later"
    assert sorted(entry["identifications"] for entry in amplitude.requests) == [59, 170, 170]
    assert capsys.readouterr().out.strip() == json.dumps(STATE["value"])


# -- AIMD ----------------------------------------------------------------------------------------
def test_concurrency_halves_once_per_round_trip_and_grows_by_one_per_run_of_successes() -> None:
    changes: list[int] = []
    limit = AdaptiveConcurrency(8, changes.append)
    stop, failed = threading.Event(), threading.Event()
    epochs = [limit.acquire(stop, failed) for _ in range(8)]
    assert limit.in_flight == 8
    # Four requests in flight together are throttled: one halving, not four.
    for epoch in epochs[:4]:
        limit.release(epoch, throttled=True)
    assert (limit.limit, limit.lowest, limit.in_flight) == (4, 4, 4)
    for epoch in epochs[4:]:
        limit.release(epoch, succeeded=True)
    # A request sent after the halving and throttled halves it again.
    limit.release(limit.acquire(stop, failed), throttled=True)
    assert (limit.limit, limit.lowest) == (2, 2)

    # One more after each run of successes: RECOVERY_ROUND_TRIPS x the limit while more than one
    # below the limit last throttled (4 here), GROWTH_ROUND_TRIPS x the limit from there on.
    def succeed(times: int) -> None:
        for _ in range(times):
            limit.release(limit.acquire(stop, failed), succeeded=True)

    succeed(RECOVERY_ROUND_TRIPS * 2 - 1)
    assert limit.limit == 2
    succeed(1)
    assert limit.limit == 3
    succeed(GROWTH_ROUND_TRIPS * 3 - 1)
    assert limit.limit == 3  # next to the throttled level: growth is slow again
    succeed(1)
    assert limit.limit == 4
    succeed(GROWTH_ROUND_TRIPS * 40)
    assert limit.limit == 8  # back to max_concurrency, never above
    assert changes == [4, 2, 3, 4, 5, 6, 7, 8]
    one = AdaptiveConcurrency(1)
    one.release(one.acquire(stop, failed), throttled=True)
    assert one.limit == 1  # never below one
    # Retry-After holds for every request of the client, not only the throttled one.
    one.release(one.acquire(stop, failed), throttled=True, pause=0.3)
    started = time.monotonic()
    one.release(one.acquire(stop, failed), succeeded=True)
    assert time.monotonic() - started >= 0.25  # a lower bound: the wait guarantees it
    # At the limit, a stop ends the wait for a slot.
    held = one.acquire(stop, failed)
    stop.set()
    with pytest.raises(Stopped):
        one.acquire(stop, failed)
    one.release(held, succeeded=True)


@pytest.fixture
def limited() -> Iterator[AmplitudeEmulator]:
    """An Amplitude of its own, each request a 100 ms round trip.

    3,000 groups a second at most (600 at once): one request in flight carries about 1,700
    groups a second, eight far more.
    """
    with AmplitudeEmulator(ca=CA, keep_payloads=False) as emulator:
        emulator.set_latency(0.1, 0.01)
        emulator.set_rate_limit(3000, burst=600)
        yield emulator  # type: ignore[misc]


def test_throttling_halves_the_concurrency_and_the_summary_says_so(limited, capsys, tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO)
    limited.set_rate_limit(1000, burst=340)  # under what a single request in flight carries
    report = tmp_path / "report.json"
    config = {
        **BASE_CONFIG,
        "api_url": f"{limited.url}/groupidentify",
        "mapping": MAPPING,
        "max_concurrency": 8,
        "max_backoff": 5,
        "report_file": str(report),
    }
    target = TargetAmplitudeGroups(config=config, validate_config=True)
    target.listen(lines_of(schema_msg(), *[record(i) for i in range(3000)], STATE))  # type: ignore[arg-type]
    assert len(limited.groups()["org id"]) == 3000
    saved = json.loads(report.read_text())
    assert saved["lowest_concurrency"] < 8 and saved["retries"] >= 1
    summary = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Summary")]
    assert summary[0].endswith(f"concurrency {saved['concurrency']} of 8") or summary[0].endswith(
        f"concurrency {saved['concurrency']} of 8 (lowest {saved['lowest_concurrency']})"
    )
    assert any(r.getMessage().startswith("Concurrency: ") for r in caplog.records)


def test_two_targets_share_a_rate_limit_without_retrying_in_lockstep(limited, tmp_path):
    # Two shards of one import, each its own target, against one Amplitude project's limit:
    # 1,400 groups a second (340 at once), each request a 500 ms round trip, so that one
    # request in flight carries 340 groups a second and each target needs about two in flight,
    # not its eight. Reading the input outpaces the limit even on a busy machine.
    limited.set_latency(0.5, 0.05)
    limited.set_rate_limit(1400, burst=340)
    processes = []
    for shard in range(2):
        folder = tmp_path / f"shard{shard}"
        folder.mkdir()
        config = {
            **BASE_CONFIG,
            "api_url": f"{limited.url}/groupidentify",
            "mapping": MAPPING,
            "max_concurrency": 8,
            "max_backoff": 5,
            "report_file": str(folder / "report.json"),
            "rejected_file": str(folder / "rejected.jsonl"),
        }
        (folder / "config.json").write_text(json.dumps(config))
        rows = [record(shard * 10_000 + i) for i in range(3000)]
        (folder / "input.jsonl").write_text("".join(lines_of(schema_msg(), *rows, STATE)))
        processes.append(
            subprocess.Popen(
                [TARGET_CLI, "--config", str(folder / "config.json"), "--input", str(folder / "input.jsonl")],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "REQUESTS_CA_BUNDLE": str(CA.ca_path)},
            )
        )
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
    assert len(limited.groups()["org id"]) == 6000
    reports = [json.loads((tmp_path / f"shard{s}" / "report.json").read_text()) for s in range(2)]
    # Each adapted on its own: a target that was throttled came down from 8 in flight.
    assert any(r["retries"] for r in reports)
    assert all(r["lowest_concurrency"] < 8 for r in reports if r["retries"]), reports
    # Together they settled under the limit: few requests were throttled. With a fixed 8 in
    # flight each (before issue 20), 34 to 61 of the 36 requests' tries were throttled; with
    # AIMD and a shared Retry-After pause, 4 to 17 (measured on a busy 2-core machine).
    throttled = limited.metrics()["throttled"]
    accepted = limited.metrics()["accepted"]
    assert accepted == 36
    assert sum(r["retries"] for r in reports) == throttled
    assert throttled <= accepted * 2 // 3, (throttled, accepted)
