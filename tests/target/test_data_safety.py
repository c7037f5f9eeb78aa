"""Issue 6 ("Never lose or damage data"), target side: one test per numbered point.

Amplitude's documented answers (https://amplitude.com/docs/apis/analytics/group-identify):
``200`` with the body ``success`` accepts a request; ``400`` refuses it with no per-item detail;
``413`` is too large; ``429`` throttles. The emulator answers the same way (emulators/amplitude.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import select
import signal
import stat
import subprocess
import sys
import threading
import time
import traceback
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.exceptions import ConfigValidationError

from emulators._server import Fault, LocalCA
from emulators.amplitude import API_KEY, AmplitudeEmulator
from target_amplitude_groups.errors import (
    AmplitudeError,
    RunFailure,
    StreamMismatch,
    TooManyRejected,
    Unreachable,
)
from target_amplitude_groups.target import TargetAmplitudeGroups
from tests.mappings import ACCOUNT_PROPERTIES, document, group
from tests.support.emulators import CA
from tests.support.target import BASE_CONFIG, run_target, singer
from tests.target.test_target import MAPPING, STATE, record, schema_msg

TARGET_CLI = str(Path(sys.executable).with_name("target-amplitude-groups"))


def state(n: int) -> dict:
    return {
        "type": "STATE",
        "value": {"bookmarks": {"Account": {"replication_key_value": f"2025-01-{n:02d}"}}},
    }


def states_in(messages: list[dict]) -> list[dict]:
    return [m for m in messages if "bookmarks" in m]


# -- 1. A request refused as a whole fails the run, within three requests, without STATE -------
def test_a_request_refused_as_a_whole_fails_the_run(amplitude, capsys):
    amplitude.faults.add(Fault(status=400, count=10_000, path="/groupidentify", body="invalid_request"))
    lines = singer(schema_msg(), *[record(i) for i in range(300)], STATE)
    with pytest.raises(AmplitudeError, match=r"refused a request as a whole \(HTTP 400: invalid_request\)"):
        run_target({"mapping": MAPPING}, lines, capsys)
    # Two requests of 150 groups went out at once; each is refused, then both of its halves:
    # at most 3 requests each, not a bisection down to 300 single groups.
    assert len(amplitude.requests) <= 6
    assert "bookmarks" not in capsys.readouterr().out


def test_a_request_refused_as_a_whole_after_checkpoints_keeps_them(amplitude, capsys):
    # README, "Guarantees": the bookmark stays at the last checkpoint, which covers none of the
    # refused request's records (every group of the third batch is refused, wherever it goes).
    ids = [record(i)["record"]["Id"] for i in range(400)]
    amplitude.fail_requests_carrying(ids[200:300], status=400)
    lines = singer(
        schema_msg(),
        *[m for n in range(4) for m in (*map(record, range(n * 100, n * 100 + 100)), state(n + 1))],
    )
    with pytest.raises(AmplitudeError, match=r"refused a request as a whole \(HTTP 400: emulator: "):
        run_target({"mapping": MAPPING, "batch_size_rows": 100}, lines, capsys)
    written = [json.loads(line)["bookmarks"]["Account"] for line in capsys.readouterr().out.splitlines()]
    assert [mark["replication_key_value"] for mark in written] == ["2025-01-01", "2025-01-02"]
    assert not set(ids[200:300]) & set(amplitude.groups()["org id"])


def test_rejections_always_go_to_a_file_and_too_many_fail_the_run(amplitude, capsys, tmp_path):
    schema = {"type": "object", "properties": {"id": {"type": "string"}, "meta": {"type": "object"}}}
    deep: dict = {"x": 1}
    for _ in range(45):  # Amplitude refuses objects nested deeper than 40 (emulator: strict mode)
        deep = {"x": deep}
    rows = [
        {"type": "RECORD", "stream": "u", "record": {"id": str(i), "meta": deep if i < 3 else {"ok": i}}}
        for i in range(20)
    ]
    rejected = tmp_path / "nested" / "rejected.jsonl"
    config = {"rejected_file": str(rejected), "max_rejected": 2}
    with pytest.raises(TooManyRejected, match="more than max_rejected=2"):
        run_target(config, singer(schema_msg("u", schema, ("id",)), *rows, STATE), capsys)
    assert [json.loads(line)["status"] for line in rejected.read_text().splitlines()] == [400, 400, 400]
    assert stat.S_IMODE(rejected.stat().st_mode) == 0o600  # point 19: side files are private
    assert "bookmarks" not in capsys.readouterr().out


def test_rejections_past_the_limit_keep_the_pending_checkpoint_back(amplitude, capsys, tmp_path):
    # Two groups of the first batch are refused alone, one more than max_rejected allows. The
    # run fails when their answers are settled, by then with that batch's STATE pending as a
    # checkpoint (its requests were all answered). Writing it would move the bookmark over the
    # groups that failed the run, and the next run would not send them again.
    ids = [record(i)["record"]["Id"] for i in range(200)]
    amplitude.fail_requests_carrying(ids[5:7], status=400)
    lines = singer(schema_msg(), *map(record, range(100)), state(1), *map(record, range(100, 200)), state(2))
    rejected = tmp_path / "rejected.jsonl"
    config = {"mapping": MAPPING, "batch_size_rows": 100, "max_rejected": 1, "rejected_file": str(rejected)}
    with pytest.raises(TooManyRejected, match="more than max_rejected=1"):
        run_target(config, lines, capsys)
    assert "bookmarks" not in capsys.readouterr().out
    assert len(rejected.read_text().splitlines()) == 2


@pytest.mark.parametrize("refusal", ["group", "value"])
def test_a_refusal_the_rejected_file_cannot_hold_keeps_the_pending_checkpoint_back(
    amplitude, capsys, tmp_path, refusal
):
    # The rejected file cannot be written (a full disk; here its folder is a file). A group
    # Amplitude refused alone, or a value left out, of the first batch is then nowhere: not in
    # Amplitude, not on file. The run fails, and the first batch's pending checkpoint must not
    # be written over it, or the next run would not send that group again.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    rows = [record(i) for i in range(200)]
    if refusal == "group":
        amplitude.fail_requests_carrying([rows[5]["record"]["Id"]], status=400)
    else:
        rows[5] = record(5, AnnualRevenue=float("nan"))
    lines = singer(schema_msg(), *rows[:100], state(1), *rows[100:], state(2)).replace("NaN", "1e999")
    config = {"mapping": MAPPING, "batch_size_rows": 100, "rejected_file": str(blocker / "rejected.jsonl")}
    with pytest.raises(RunFailure, match=f"cannot write {blocker / 'rejected.jsonl'}"):
        run_target(config, lines, capsys)
    assert "bookmarks" not in capsys.readouterr().out


# -- 2. A dry run never moves the bookmark ------------------------------------------------------
def test_a_dry_run_emits_no_state(amplitude, capsys, tmp_path):
    out = tmp_path / "dry.jsonl"
    lines = singer(schema_msg(), *[record(i) for i in range(30)], state(1), record(31), state(2))
    messages = run_target(
        {"mapping": MAPPING, "dry_run": True, "dry_run_file": str(out), "batch_size_rows": 10}, lines, capsys
    )
    assert messages == []
    assert amplitude.requests == []
    assert sum(len(json.loads(line)["identification"]) for line in out.read_text().splitlines()) == 31


# -- 3. A mapped field the stream does not have fails at SCHEMA time -----------------------------
def test_a_mapped_field_missing_from_the_schema_fails_before_sending(amplitude, capsys):
    mapping = document(group("Account", "org id", "Id", (("Industy", "industry"), ("Name", "name"))))
    with pytest.raises(StreamMismatch) as exc:
        run_target({"mapping": mapping}, singer(schema_msg(), record(1), STATE), capsys)
    message = str(exc.value)
    assert message.startswith("mapping 1: Account -> org id: stream 'Account' has no field 'Industy'")
    assert "its fields are: Id, Name, AnnualRevenue" in message
    assert "\n" not in message
    assert amplitude.requests == []


def test_mapped_fields_match_the_stream_case_insensitively(amplitude, capsys):
    # Salesforce field names are case-insensitive; the tap emits canonical names.
    mapping = document(group("Account", "org id", "id", (("name", "name"), ("OWNER.NAME", "owner"))))
    run_target({"mapping": mapping}, singer(schema_msg(), record(1), STATE), capsys)
    assert amplitude.groups()["org id"]["001000000000000001"] == {"name": "Account 1", "owner": "Ann Ö"}


def test_a_later_stream_missing_a_mapped_field_keeps_the_checkpoints_of_the_streams_before(amplitude, capsys):
    # README, "Guarantees": nothing of that stream is sent; the streams before it were
    # acknowledged, and their pending checkpoint is still written.
    mapping = document(
        group("Account", "org id", "Id", ACCOUNT_PROPERTIES),
        group("Contact", "person", "Id", (("Email", "email"),)),
    )
    contact = {"type": "object", "properties": {"Id": {"type": "string"}, "Name": {"type": "string"}}}
    lines = singer(schema_msg(), *map(record, range(100)), state(1), schema_msg("Contact", contact), state(2))
    with pytest.raises(StreamMismatch, match="stream 'Contact' has no field 'Email'"):
        run_target({"mapping": mapping, "batch_size_rows": 100}, lines, capsys)
    written = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert written == [state(1)["value"]]
    assert set(amplitude.groups()) == {"org id"}


def test_a_run_that_fails_while_a_checkpoint_holds_requests_leaves_no_thread_waiting(amplitude, capsys):
    # STATE 1 waits for a request (0.5 s), the next batch's request is held behind it, then a
    # later stream lacks a mapped field and the run fails. The held request is never sent, and
    # its thread must not wait for a checkpoint that never comes: the interpreter joins the
    # request threads at exit, so one left waiting would hang the process for ever.
    amplitude.set_latency(0.5)
    mapping = document(
        group("Account", "org id", "Id", ACCOUNT_PROPERTIES),
        group("Contact", "person", "Id", (("Email", "email"),)),
    )
    contact = {"type": "object", "properties": {"Id": {"type": "string"}, "Name": {"type": "string"}}}
    lines = singer(
        schema_msg(),
        *map(record, range(5)),
        state(1),
        *map(record, range(5, 10)),
        schema_msg("Contact", contact),
    )
    with pytest.raises(StreamMismatch):
        run_target({"mapping": mapping, "batch_size_rows": 5}, lines, capsys)

    def waiting() -> list[str]:
        return [
            name
            for frame in sys._current_frames().values()
            for name in (f.name for f in traceback.extract_stack(frame))
            if name == "_wait_opened"
        ]

    deadline = time.monotonic() + 10
    while waiting() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not waiting()
    assert record(7)["record"]["Id"] not in amplitude.groups().get("org id", {})


# -- 4. Checkpoints: STATE after each acknowledged batch and every state_interval_seconds ---------
def test_state_follows_each_acknowledged_batch(amplitude, capsys):
    lines = singer(
        schema_msg(),
        *[m for i in range(5) for m in (*[record(i * 100 + j) for j in range(100)], state(i + 1))],
    )
    messages = run_target({"mapping": MAPPING, "batch_size_rows": 100}, lines, capsys)
    assert [m["bookmarks"]["Account"]["replication_key_value"] for m in states_in(messages)] == [
        f"2025-01-{n:02d}" for n in range(1, 6)
    ]


def test_a_crash_late_in_a_run_keeps_the_checkpoints_before_it(amplitude, capsys):
    # 100 groups of 6 properties: one request per batch. Three batches pass, then Amplitude fails.
    batches = [m for i in range(5) for m in (*[record(i * 100 + j) for j in range(100)], state(i + 1))]
    amplitude.faults.add(Fault(count=3, path="/groupidentify"))  # no status: answered normally
    amplitude.faults.add(Fault(status=503, count=100, path="/groupidentify"))
    with pytest.raises(AmplitudeError):
        run_target(
            {"mapping": MAPPING, "batch_size_rows": 100, "max_retries": 1},
            singer(schema_msg(), *batches),
            capsys,
        )
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [m["bookmarks"]["Account"]["replication_key_value"] for m in out] == [
        "2025-01-01",
        "2025-01-02",
        "2025-01-03",
    ]
    assert len(amplitude.groups()["org id"]) == 300


def test_with_requests_in_flight_together_a_failed_batch_keeps_the_checkpoints_before_it(amplitude, capsys):
    # The test above at the default concurrency, several requests of each batch in flight at once
    # (500 records of 6 properties: 3 requests, 150 ms each): the fourth batch's requests fail
    # wherever they arrive. Every STATE before the failure is written, none after it; the fifth
    # batch's requests wait for the fourth's answers, so they are never sent.
    amplitude.set_latency(0.15)
    ids = [record(i)["record"]["Id"] for i in range(2500)]
    amplitude.fail_requests_carrying(ids[1500:2000])
    lines = singer(
        schema_msg(),
        *[m for n in range(5) for m in (*map(record, range(n * 500, n * 500 + 500)), state(n + 1))],
    )
    with pytest.raises(AmplitudeError):
        run_target({"mapping": MAPPING, "batch_size_rows": 500, "max_retries": 1}, lines, capsys)
    written = [json.loads(line)["bookmarks"]["Account"] for line in capsys.readouterr().out.splitlines()]
    assert [mark["replication_key_value"] for mark in written] == ["2025-01-01", "2025-01-02", "2025-01-03"]
    spans = sorted((e["time"] - e["latency"], e["time"]) for e in amplitude.requests)
    assert any(later[0] < earlier[1] for earlier, later in pairwise(spans))  # in flight together
    groups = set(amplitude.groups()["org id"])
    assert set(ids[:1500]) <= groups
    assert not set(ids[1500:]) & groups


def test_no_request_overtakes_the_requests_before_a_checkpoint(amplitude, capsys):
    # A request of the records read after a checkpoint's STATE leaves only once Amplitude has
    # answered every request of the records before it; within a batch, requests go together.
    # Seen from Amplitude (the emulator's log), a later batch's request never arrives before an
    # earlier batch's was handled ("time": before its answer was sent). Without that, a failure
    # late in a run could let a later batch in while an earlier one failed, and the faults of
    # the tests above, which go by arrival, would hit another batch than meant.
    amplitude.set_latency(0.1, 0.05)
    lines = singer(
        schema_msg(),
        *[m for n in range(5) for m in (*map(record, range(n * 500, n * 500 + 500)), state(n + 1))],
    )
    out = run_target({"mapping": MAPPING, "batch_size_rows": 500}, lines, capsys)
    assert len(states_in(out)) == 5
    batch = {record(i)["record"]["Id"]: i // 500 for i in range(2500)}
    requests = [(batch[e["payload"][0]["group_value"]], e["arrived"], e["time"]) for e in amplitude.requests]
    assert len(requests) == 15 and all(
        {batch[item["group_value"]] for item in e["payload"]} == {n}
        for e, (n, _, _) in zip(amplitude.requests, requests, strict=True)
    )
    together = [(a, b) for a, b in pairwise(sorted(r[1:] for r in requests)) if b[0] < a[1]]
    assert together  # requests of one batch were in flight at once
    for n, arrived, _ in requests:
        assert all(arrived > handled for m, _, handled in requests if m < n), f"batch {n + 1} overtook"


def test_records_read_while_a_checkpoint_waited_are_delivered_at_the_end(amplitude, capsys):
    # Batches of 7: the first batch's request is out (300 ms) when STATE 1 comes, so that STATE's
    # checkpoint waits for it while the next six records are read, into the outbox, unsent. STATE 2
    # then writes that checkpoint: a drain, after which the SDK counts this sink as empty. The end
    # of the input must still send those six before the last STATE: once, the SDK skipped the
    # "empty" sink, wrote STATE 2, and the six were lost for good. Found by the convergence soak's
    # small batches (seed 996321391).
    amplitude.set_latency(0.3)
    lines = singer(schema_msg(), *map(record, range(7)), state(1), *map(record, range(7, 13)), state(2))
    out = run_target({"mapping": MAPPING, "batch_size_rows": 7}, lines, capsys)
    assert [m["bookmarks"]["Account"]["replication_key_value"] for m in out] == ["2025-01-01", "2025-01-02"]
    assert {record(i)["record"]["Id"] for i in range(13)} <= set(amplitude.groups()["org id"])


def test_a_stream_begun_while_a_checkpoint_waited_is_delivered_at_the_end(amplitude, capsys):
    # The same with a second stream (no mapping: group type = stream name): its sink is made while
    # STATE 1's checkpoint waits, so that checkpoint's drain waits for none of its records and the
    # SDK counts it as drained; they must still go before the last STATE.
    amplitude.set_latency(0.3)
    contact = [{**record(i), "stream": "Contact"} for i in range(100, 103)]
    lines = singer(schema_msg(), *map(record, range(7)), state(1), schema_msg("Contact"), *contact, state(2))
    out = run_target({"batch_size_rows": 7}, lines, capsys)
    assert [m["bookmarks"]["Account"]["replication_key_value"] for m in out] == ["2025-01-01", "2025-01-02"]
    assert {m["record"]["Id"] for m in contact} <= set(amplitude.groups().get("Contact", {}))


def test_a_slow_stream_is_checkpointed_every_state_interval(amplitude, capsys, caplog):

    caplog.set_level(logging.INFO)

    def slow_tap():  # a record, then its STATE, then a pause longer than state_interval_seconds
        yield json.dumps(schema_msg()) + "\n"
        for i in range(3):
            yield json.dumps(record(i)) + "\n"
            yield json.dumps(state(i + 1)) + "\n"
            time.sleep(1.2)

    capsys.readouterr()
    target = TargetAmplitudeGroups(config={**BASE_CONFIG, "mapping": MAPPING, "state_interval_seconds": 1})
    target.listen(slow_tap())  # type: ignore[arg-type]
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    # No batch filled (10,000 rows): each STATE went out because the interval had passed.
    assert [m["bookmarks"]["Account"]["replication_key_value"] for m in out] == [
        "2025-01-01",
        "2025-01-02",
        "2025-01-03",
    ]
    assert caplog.text.count("Checkpoint: ") == 3


def test_a_quiet_tap_still_gets_its_state_checkpointed_within_the_interval(amplitude, tmp_path):
    # README: a checkpoint "at least every state_interval_seconds". A tap that sent records and
    # their STATE, then goes quiet (a long Bulk job on the next object), must not hold back a STATE
    # Amplitude already acknowledged: killed then, the next run would resend all of it. Through the
    # real CLI, with stdin a pipe that stays open, as under Meltano.
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({**BASE_CONFIG, "mapping": MAPPING, "state_interval_seconds": 1}))
    process = subprocess.Popen(
        [TARGET_CLI, "--config", str(config_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "REQUESTS_CA_BUNDLE": str(CA.ca_path)},
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(singer(schema_msg(), *[record(i) for i in range(5)], state(1)))
        process.stdin.flush()  # and the pipe stays open: the tap is busy, more will come
        ready, _, _ = select.select([process.stdout], [], [], 15)
        assert ready, "no STATE while the tap was quiet"
        first = json.loads(process.stdout.readline())
        assert first["bookmarks"]["Account"]["replication_key_value"] == "2025-01-01"
        assert len(amplitude.groups()["org id"]) == 5  # written after Amplitude acknowledged them
        out, err = process.communicate(singer(record(5), state(2)), timeout=60)  # then the tap ends
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err[-2000:]
    rest = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [m["bookmarks"]["Account"]["replication_key_value"] for m in rest] == ["2025-01-02"]
    assert err.count("Checkpoint: ") == 2


def test_a_checkpoint_is_written_once_its_answers_are_in_while_the_tap_is_quiet(
    amplitude, capsys, caplog, monkeypatch
):
    # A full batch and its STATE, then the tap goes quiet with its pipe open (a long query). The
    # last answer before that STATE wakes the input loop: the checkpoint is written then, not at
    # the next line or quiet tick (made a minute here), and the requests held after it could go.
    from target_amplitude_groups import target as target_module

    monkeypatch.setattr(target_module, "QUIET_SECONDS", 60.0)
    caplog.set_level(logging.INFO)
    amplitude.set_latency(0.3)
    read, write = os.pipe()
    while_quiet = threading.Event()

    def tap() -> None:
        with os.fdopen(write, "w") as out:
            out.write(singer(schema_msg(), *map(record, range(5)), state(1)))
            out.flush()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not while_quiet.is_set():
                if any(r.getMessage().startswith("Checkpoint: ") for r in list(caplog.records)):
                    while_quiet.set()
                time.sleep(0.05)
            out.write(singer(record(5), state(2)))  # then the tap ends

    thread = threading.Thread(target=tap)
    thread.start()
    target = TargetAmplitudeGroups(
        config={**BASE_CONFIG, "mapping": MAPPING, "batch_size_rows": 5}, validate_config=True
    )
    with os.fdopen(read) as stdin:
        target.listen(stdin)
    thread.join()
    assert while_quiet.is_set(), "the checkpoint waited for the tap's next line"
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [m["bookmarks"]["Account"]["replication_key_value"] for m in out] == ["2025-01-01", "2025-01-02"]


# -- 7. Errors that retrying cannot fix fail at once ----------------------------------------------
def test_a_certificate_error_fails_at_once_and_names_requests_ca_bundle(capsys):
    with AmplitudeEmulator(ca=LocalCA()) as other:  # a CA that REQUESTS_CA_BUNDLE does not hold
        config = {"api_url": f"{other.url}/groupidentify", "max_retries": 8, "max_backoff": 5}
        started = time.monotonic()
        with pytest.raises(Unreachable, match="REQUESTS_CA_BUNDLE") as exc:
            run_target({**config, "mapping": MAPPING}, singer(schema_msg(), record(1), STATE), capsys)
        assert time.monotonic() - started < 5
    assert "certificate" in str(exc.value)


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("https://no-such-host.invalid/groupidentify", "cannot resolve host"),
        ("https://127.0.0.1:9/groupidentify", "connection refused"),
    ],
)
def test_dns_failures_and_refused_connections_fail_at_once(capsys, url, cause):
    with pytest.raises(Unreachable, match=cause):
        run_target(
            {"api_url": url, "mapping": MAPPING, "max_backoff": 5}, singer(schema_msg(), record(1)), capsys
        )


# -- 8. Generic mode drops Singer metadata columns --------------------------------------------------
def test_generic_mode_does_not_send_sdc_columns(amplitude, capsys):
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "plan": {"type": "string"},
            "_sdc_filename": {"type": "string"},
            "_sdc_stream": {"type": "string"},
        },
    }
    row = {"id": "1", "plan": "pro", "_sdc_filename": "a.jsonl", "_sdc_stream": "x"}
    lines = singer(schema_msg("t", schema, ("id",)), {"type": "RECORD", "stream": "t", "record": row})
    run_target({}, lines, capsys)
    assert amplitude.groups()["t"]["1"] == {"plan": "pro"}
    amplitude.reset()
    run_target({"keep_sdc_columns": True}, lines, capsys)
    assert set(amplitude.groups()["t"]["1"]) == {"plan", "_sdc_filename", "_sdc_stream"}


# -- 9, 16, 19. Settings are checked at start ------------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "value", "error"),
    [
        ("max_retries", -1, "max_retries"),
        ("request_timeout", 0, "request_timeout"),
        ("max_backoff", -1, "max_backoff"),
        ("max_concurrency", 0, "max_concurrency"),
        ("state_interval_seconds", 0, "state_interval_seconds"),
        ("max_rejected", -5, "max_rejected"),
        ("api_url", "http://api2.amplitude.com/groupidentify", "must be an https:// URL"),
        ("api_url", "api2.amplitude.com/groupidentify", "must be an https:// URL"),
    ],
)
def test_bad_settings_fail_at_start(amplitude, capsys, setting, value, error):
    with pytest.raises(ConfigValidationError) as exc:
        run_target({"mapping": MAPPING, setting: value}, singer(schema_msg(), record(1)), capsys)
    assert any(error in e for e in exc.value.errors), exc.value.errors
    assert amplitude.requests == []


def test_plain_http_is_allowed_to_loopback_only():

    TargetAmplitudeGroups(config={"api_key": "k", "api_url": "http://127.0.0.1:8444/groupidentify"})


# -- 10. Retry-After is capped at max_backoff -------------------------------------------------------
def test_retry_after_is_capped_at_max_backoff(amplitude, capsys, caplog):
    amplitude.faults.add(Fault(status=429, count=1, path="/groupidentify", headers={"Retry-After": "1e9"}))
    started = time.monotonic()
    run_target({"mapping": MAPPING, "max_backoff": 1}, singer(schema_msg(), record(1), STATE), capsys)
    assert time.monotonic() - started < 5
    assert "asked to wait 1e+09s (Retry-After); waiting max_backoff=1s instead" in caplog.text


# -- 11. Only Amplitude's success answer acknowledges ----------------------------------------------
@pytest.mark.parametrize("body", ["<html><body>Sign in to the proxy</body></html>", {"code": 400}])
def test_a_2xx_without_amplitudes_success_answer_is_not_an_acknowledgement(amplitude, capsys, body):
    amplitude.faults.add(Fault(status=200, count=1000, path="/groupidentify", body=body))
    with pytest.raises(AmplitudeError, match="without Amplitude's success answer"):
        run_target({"mapping": MAPPING}, singer(schema_msg(), record(1), STATE), capsys)
    assert "bookmarks" not in capsys.readouterr().out


# -- 12. Input that would be refused wholesale fails validation ------------------------------------
def test_oversized_group_types_and_unusable_property_names_are_refused(amplitude, capsys):
    mapping = document(group("Account", "g" * 1100, "Id", (("Name", "name"),)))
    with pytest.raises(ConfigValidationError) as exc:
        run_target({"mapping": mapping}, "", capsys)
    assert any("longer than 1024" in e for e in exc.value.errors)
    for bad in ("", "$plan"):
        schema = {"type": "object", "properties": {"id": {"type": "string"}, bad: {"type": "string"}}}
        with pytest.raises(StreamMismatch, match="cannot be Amplitude property names"):
            run_target({}, singer(schema_msg("t", schema, ("id",))), capsys)
    assert amplitude.requests == []


# -- 13. Records of one group keep their order across a SCHEMA change -----------------------------
def test_order_is_kept_across_a_schema_change(amplitude, capsys):
    changed = {
        **schema_msg()["schema"],
        "properties": {**schema_msg()["schema"]["properties"], "X": {"type": "string"}},
    }
    lines = singer(
        schema_msg(),
        record(1, Name="old"),
        schema_msg(schema=changed),
        record(1, Name="new"),
        *[record(i) for i in range(2, 1501)],
        STATE,
    )
    run_target({"mapping": MAPPING, "batch_size_rows": 1500}, lines, capsys)
    assert amplitude.groups()["org id"]["001000000000000001"]["account name"] == "new"


def test_a_schema_change_while_a_checkpoint_waits_writes_that_checkpoint_first(amplitude, capsys):
    # Batches of 5, each request taking 0.3 s: STATE 1 comes while the first batch's request is
    # out (its checkpoint pending), and the next batch's request waits for that checkpoint. Then
    # the schema changes: the retired sink is drained whole, held request included, so the
    # pending checkpoint is written first; else that drain would wait for ever.
    amplitude.set_latency(0.3)
    changed = {
        **schema_msg()["schema"],
        "properties": {**schema_msg()["schema"]["properties"], "X": {"type": "string"}},
    }
    lines = singer(
        schema_msg(),
        *map(record, range(5)),
        state(1),
        *map(record, range(5, 10)),
        schema_msg(schema=changed),
        *map(record, range(10, 13)),
        state(2),
    )
    result: list[list[dict]] = []
    runner = threading.Thread(
        target=lambda: result.append(run_target({"mapping": MAPPING, "batch_size_rows": 5}, lines, capsys)),
        daemon=True,
    )
    runner.start()
    runner.join(60)
    assert result, "the run did not end"
    assert [m["bookmarks"]["Account"]["replication_key_value"] for m in states_in(result[0])] == [
        "2025-01-01",
        "2025-01-02",
    ]
    assert len(amplitude.groups()["org id"]) == 13


# -- 14. A key absent from a record is left alone ------------------------------------------------
def test_missing_keys_do_not_unset_properties(amplitude, capsys):
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "n": {"type": ["integer", "null"]},
        },
    }
    rows = [{"id": "a1", "name": "A", "n": 7}, {"id": "a1", "name": "B"}]
    lines = singer(
        schema_msg("t", schema, ("id",)), *[{"type": "RECORD", "stream": "t", "record": r} for r in rows]
    )
    for batch in (1, 10):  # across batches and within one
        amplitude.reset()
        run_target({"batch_size_rows": batch}, lines, capsys)
        assert amplitude.groups()["t"]["a1"] == {"name": "B", "n": 7}


# -- 15. One bad value never blocks a run -----------------------------------------------------------
def test_bad_values_are_left_out_recorded_and_the_rest_delivered(amplitude, capsys, tmp_path):
    schema = {"type": "object", "properties": {"id": {"type": "string"}, "a": {}, "b": {}}}
    rows = [
        '{"id": "1", "a": "lone \\ud800 surrogate", "b": "ok"}',
        '{"id": "2", "a": 1e5000, "b": "ok"}',
        '{"id": "3", "a": 1e999999999, "b": "ok"}',
        json.dumps({"id": "4", "a": ["y" * 1000] * 1200, "b": "ok"}),  # one property over 1 MB
    ]
    lines = singer(schema_msg("t", schema, ("id",))) + "".join(
        f'{{"type": "RECORD", "stream": "t", "record": {row}}}\n' for row in rows
    )
    rejected = tmp_path / "rejected.jsonl"
    started = time.monotonic()
    run_target({"rejected_file": str(rejected), "validate_records": False}, lines + singer(STATE), capsys)
    assert time.monotonic() - started < 30
    assert amplitude.groups()["t"] == {str(i): {"b": "ok"} for i in range(1, 5)}
    problems = [json.loads(line) for line in rejected.read_text().splitlines()]
    assert [(p["group_value"], p["property"]) for p in problems] == [
        ("1", "a"),
        ("2", "a"),
        ("3", "a"),
        ("4", "a"),
    ]


# -- 17. The API key never reaches a log line or a file ---------------------------------------------
def test_the_api_key_is_redacted_from_errors_and_files(amplitude, capsys, caplog, tmp_path):
    amplitude.faults.add(Fault(status=400, count=1, path="/groupidentify", body=f"bad group ({API_KEY})"))
    rejected = tmp_path / "rejected.jsonl"
    run_target(
        {"mapping": MAPPING, "rejected_file": str(rejected)}, singer(schema_msg(), record(1), STATE), capsys
    )
    assert API_KEY not in caplog.text + rejected.read_text() + capsys.readouterr().err
    assert "bad group (***)" in rejected.read_text()


# -- 18. Debug logging stays linear in the batch size ----------------------------------------------
def test_debug_logging_is_linear_in_the_run_size(amplitude, capsys, caplog):
    def logged(n: int) -> int:
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            run_target(
                {"mapping": MAPPING, "batch_size_rows": 10_000},
                singer(schema_msg(), *[record(i) for i in range(n)]),
                capsys,
            )
        return sum(len(r.getMessage()) for r in caplog.records)

    small, large = logged(200), logged(800)
    assert large < 6 * small  # quadratic logging would be 16 times larger


# -- 5, 10, 19. Signals and the run report, through the real CLI ------------------------------------
def run_cli(config: dict, lines: str, tmp_path: Path, **popen: Any) -> subprocess.Popen[str]:
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({**BASE_CONFIG, **config}))
    input_file = tmp_path / "input.jsonl"
    input_file.write_text(lines)
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(CA.ca_path)}
    return subprocess.Popen(
        [TARGET_CLI, "--config", str(config_file), "--input", str(input_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **popen,
    )


@pytest.mark.parametrize(("signum", "code"), [(15, 143), (2, 130)])
def test_a_signal_during_delivery_stops_without_state_or_traceback(amplitude, tmp_path, signum, code):
    amplitude.faults.add(Fault(delay=30, count=100, path="/groupidentify"))  # a very slow Amplitude
    report = tmp_path / "report.json"
    lines = singer(schema_msg(), *[record(i) for i in range(50)], STATE)
    process = run_cli({"mapping": MAPPING, "request_timeout": 2, "report_file": str(report)}, lines, tmp_path)
    deadline = time.monotonic() + 20
    while not amplitude.faults.pending() or amplitude.faults.pending()[0].count == 100:
        assert time.monotonic() < deadline, "the target never sent a request"
        time.sleep(0.05)
    time.sleep(0.3)
    sent = time.monotonic()
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)  # a deadlock would time out here
    # In-flight requests end within request_timeout (2 s); the rest is interpreter exit on a busy machine.
    assert time.monotonic() - sent < 2 + 8
    assert process.returncode == code
    assert "Traceback" not in err
    assert "interrupted by SIG" in err
    assert "bookmarks" not in out
    assert json.loads(report.read_text())["status"] == "interrupted"


@pytest.mark.parametrize("moment", range(6))
def test_a_signal_at_any_moment_of_a_busy_run_stops_promptly_as_interrupted(amplitude, tmp_path, moment):
    """SIGTERM at a random moment of a run reading a pipe, sending and checkpointing all the time.

    The signal handler used to raise where the main thread happened to be. Landing inside the
    SDK's joblib drain, the run ended with "AttributeError: 'DummyProcess' object has no
    attribute 'terminate'" and exit 1 (about one stop in five here); landing between a lock's
    acquire and its release, it hung until the watchdog (CI, then one stop in forty here). The
    handler now only notes the signal; the main thread stops between two lines or as its wait
    for Amplitude ends.
    """
    amplitude.set_latency(0.003, 0.003)
    config = tmp_path / "config.json"
    settings = {"batch_size_rows": 7, "max_concurrency": 8, "state_interval_seconds": 1, "request_timeout": 5}
    config.write_text(json.dumps({**BASE_CONFIG, "mapping": MAPPING, **settings}))
    process = subprocess.Popen(
        [TARGET_CLI, "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "REQUESTS_CA_BUNDLE": str(CA.ca_path)},
    )
    stop = threading.Event()

    def feed() -> None:  # chunks of 10 records, each followed by a STATE naming the chunk
        assert process.stdin is not None
        with contextlib.suppress(OSError):
            process.stdin.write(singer(schema_msg()).encode())
            chunk = 0
            while not stop.is_set():
                rows = [record(chunk * 10 + j) for j in range(10)]
                mark = {"bookmarks": {"Account": {"replication_key_value": str(chunk)}}}
                process.stdin.write(singer(*rows, {"type": "STATE", "value": mark}).encode())
                chunk += 1
            process.stdin.close()  # the signal came: the input ends, as a stopped tap's does

    feeder = threading.Thread(target=feed)
    feeder.start()
    # A random moment once requests flow: on a loaded machine the interpreter may still be
    # starting after a second, and a signal before any handler is in place kills it (-15).
    deadline = time.monotonic() + 30
    while not amplitude.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.Random(moment).uniform(0.0, 1.0))
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    stop.set()
    try:
        out, err = (data.decode() for data in process.communicate(timeout=60))
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        feeder.join()
    # The watchdog would end a hang at request_timeout + 15 s.
    assert time.monotonic() - sent < 10, err[-2000:]
    assert process.returncode == 143, err[-2000:]
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "| ERROR" in line]
    assert "interrupted by SIGTERM" in errors[0] and not any("Error" in line for line in errors), errors
    # STATE covers only what Amplitude acknowledged: every record of the chunks up to the last one.
    written = [json.loads(line) for line in out.splitlines()]
    last = int(written[-1]["bookmarks"]["Account"]["replication_key_value"]) if written else -1
    acknowledged = {i["group_value"] for r in amplitude.requests if r["status"] == 200 for i in r["payload"]}
    assert {record(i)["record"]["Id"] for i in range(10 * (last + 1))} <= acknowledged


@pytest.mark.parametrize(
    ("mapping_text", "code", "status", "line"),
    [
        (json.dumps(MAPPING), 143, "interrupted", "interrupted by SIGTERM"),
        # A target that cannot be made: its own error stands.
        ("groups: [", 1, "failed", "Config validation failed"),
    ],
    ids=["valid", "invalid"],
)
def test_a_signal_while_the_target_is_made_ends_the_run_with_its_report(
    amplitude, tmp_path, mapping_text, code, status, line
):
    # The SDK installs its handler (drain, then exit 0) while the target is made, and the
    # target's replaces it at the end: a signal in between ended the run with exit 0 and no
    # report. The mapping file is a FIFO here, so the target waits in the middle of being made
    # (reading its mapping) until the test writes it, and the SIGTERM lands then.
    mapping = tmp_path / "mapping.yml"
    os.mkfifo(mapping)
    report = tmp_path / "report.json"
    config = {"mapping_file": str(mapping), "report_file": str(report)}
    process = run_cli(config, singer(schema_msg(), record(1), STATE), tmp_path)
    deadline = time.monotonic() + 30
    while True:  # opening the FIFO for writing succeeds once the target has opened it to read
        try:
            fd = os.open(mapping, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "the target never read its mapping"
            time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)  # handled by now, if a handler was there to take it
    try:
        with contextlib.suppress(BrokenPipeError):  # the target may be gone already
            os.write(fd, mapping_text.encode())
    finally:
        os.close(fd)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err[-2000:]
    assert "Gracefully shutting down" not in err and "Traceback" not in err
    assert line in err
    assert json.loads(report.read_text())["status"] == status
    assert amplitude.requests == []


def test_the_report_describes_a_failed_run(amplitude, tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"status": "ok"}))  # the previous run's
    amplitude.faults.add(Fault(status=503, count=100, path="/groupidentify"))
    process = run_cli(
        {"mapping": MAPPING, "max_retries": 0, "report_file": str(report)},
        singer(schema_msg(), record(1), STATE),
        tmp_path,
    )
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "Traceback" not in err
    saved = json.loads(report.read_text())
    assert saved["status"] == "failed" and "gave up after 1 attempts" in saved["error"]
    assert stat.S_IMODE(report.stat().st_mode) == 0o600


# -- Issue 10: the target's progress lines ----------------------------------------------------------
def test_long_runs_log_progress_and_checkpoints(amplitude, capsys, caplog, monkeypatch):
    from target_amplitude_groups import delivery

    monkeypatch.setattr(delivery, "PROGRESS_SECONDS", 0.0)  # every batch, instead of every 30 s
    caplog.set_level(logging.INFO)
    lines = singer(
        schema_msg(), *[m for i in range(3) for m in (*[record(i * 50 + j) for j in range(50)], state(i + 1))]
    )
    out = run_target({"mapping": MAPPING, "batch_size_rows": 50}, lines, capsys)
    assert len(states_in(out)) == 3
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Progress: ")]
    assert progress[0].startswith("Progress: 50 groups delivered (")
    assert "1 request, 0 retries, 0.0s throttled; last checkpoint: none yet" in progress[0]
    assert "last checkpoint: Account bookmark=2025-01-01 after 50 groups" in progress[1]
    checkpoints = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Checkpoint: ")]
    assert checkpoints[0] == (
        "Checkpoint: 50 groups delivered and acknowledged; STATE Account bookmark=2025-01-01"
    )
    assert all(r.levelno < logging.WARNING for r in caplog.records if "Progress" in r.getMessage())
    assert "Progress" not in capsys.readouterr().out  # never on the Singer stream


def test_a_line_that_is_not_json_is_one_error_line(amplitude, tmp_path):
    lines = singer(schema_msg(), record(1)) + "{not json\n"
    process = run_cli({"mapping": MAPPING}, lines, tmp_path)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "Unable to parse line as JSON" in err
    assert "Traceback" not in err
