"""target-amplitude-groups against the Amplitude emulator, over real HTTPS."""

from __future__ import annotations

import json
import logging
import math

import pytest
from singer_sdk.testing import get_target_test_class

from emulators._server import Fault
from target_amplitude_groups.errors import AmplitudeError, InvalidApiKey
from target_amplitude_groups.target import TargetAmplitudeGroups
from tests.mappings import ACCOUNT_PROPERTIES, document, group
from tests.support.emulators import SESSION
from tests.support.target import BASE_CONFIG, run_target, singer

ACCOUNT_SCHEMA = {
    "type": "object",
    "properties": {
        "Id": {"type": "string"},
        "Name": {"type": ["string", "null"]},
        "AnnualRevenue": {"type": ["number", "null"]},
        "IsActive__c": {"type": ["boolean", "null"]},
        "CreatedDate": {"type": ["string", "null"], "format": "date-time"},
        "SLAExpirationDate__c": {"type": ["string", "null"], "format": "date"},
        "Owner.Name": {"type": ["string", "null"]},
        "IsDeleted": {"type": ["boolean", "null"]},
    },
}
MAPPING = document(group("Account", "org id", "Id", ACCOUNT_PROPERTIES))


def schema_msg(stream="Account", schema=ACCOUNT_SCHEMA, keys=("Id",)):
    return {"type": "SCHEMA", "stream": stream, "schema": schema, "key_properties": list(keys)}


def record(i, **fields):
    row = {
        "Id": f"001{i:015d}",
        "Name": f"Account {i}",
        "AnnualRevenue": 1000.5 * i,
        "IsActive__c": i % 2 == 0,
        "CreatedDate": "2025-03-04T05:06:07.000+00:00",
        "SLAExpirationDate__c": "2026-01-31",
        "Owner.Name": "Ann Ö",
        "IsDeleted": False,
    }
    row.update(fields)
    return {"type": "RECORD", "stream": "Account", "record": row}


STATE = {"type": "STATE", "value": {"bookmarks": {"Account": {"replication_key_value": "x"}}}}


# The SDK's standard target tests (foreign streams, no mapping: stream = group type).
# The SDK lists the streams when it builds the class (now): the emulators must be up.
SESSION.start()
TestStandardTarget = get_target_test_class(TargetAmplitudeGroups, config=BASE_CONFIG)


def test_mapped_records_become_typed_group_properties(amplitude, capsys):
    lines = singer(schema_msg(), record(1), record(2, Name=None, **{"Owner.Name": None}), STATE)
    states = run_target({"mapping": MAPPING}, lines, capsys)
    assert states == [STATE["value"]]
    groups = amplitude.groups()["org id"]
    assert groups["001000000000000001"] == {
        "account name": "Account 1",
        "revenue": 1000.5,
        "active": False,
        "date": "2025-03-04T05:06:07.000+00:00",
        "sla": "2026-01-31",
        "owner": "Ann Ö",
    }
    # nulls clear the property ($unset) rather than being sent as null
    assert "account name" not in groups["001000000000000002"]
    assert "owner" not in groups["001000000000000002"]
    assert groups["001000000000000002"]["revenue"] == 2001.0


def test_batches_use_the_fewest_requests_the_limits_allow(amplitude, capsys):
    n = 3000
    run_target({"mapping": MAPPING}, singer(schema_msg(), *[record(i) for i in range(n)], STATE), capsys)
    assert len(amplitude.groups()["org id"]) == n
    posted = [r for r in amplitude.requests if r["status"] == 200]
    # 6 properties per group: the 1024-property limit binds (170 groups per request)
    assert len(posted) == math.ceil(n * 6 / 1024)
    assert all(r["properties"] <= 1024 and r["identifications"] <= 1024 for r in posted)


def test_state_only_after_acknowledgement(amplitude, capsys):
    amplitude.faults.add(Fault(status=503, count=50, path="/groupidentify"))
    with pytest.raises(AmplitudeError, match="gave up after 3 attempts"):
        run_target({"mapping": MAPPING, "max_retries": 2}, singer(schema_msg(), record(1), STATE), capsys)
    captured = capsys.readouterr()
    assert "STATE" not in captured.out and "bookmarks" not in captured.out
    assert amplitude.groups() == {}


def test_transient_failures_and_throttling_are_retried(amplitude, capsys, tmp_path):
    amplitude.faults.add(Fault(status=503, count=2, path="/groupidentify"))
    amplitude.faults.add(Fault(status=429, count=1, path="/groupidentify", headers={"Retry-After": "0.2"}))
    amplitude.faults.add(Fault(kind="body_429", count=1, path="/groupidentify"))
    report = tmp_path / "report.json"
    states = run_target(
        {"mapping": MAPPING, "report_file": str(report), "max_backoff": 1},
        singer(schema_msg(), record(1), STATE),
        capsys,
    )
    assert states == [STATE["value"]]
    assert "001000000000000001" in amplitude.groups()["org id"]
    summary = json.loads(report.read_text())
    assert summary["groups_sent"] == 1
    assert summary["retries"] == 4
    assert summary["requests"] == 5
    assert summary["throttled_seconds"] >= 0.2


def test_a_bad_identification_is_isolated_and_the_rest_delivered(amplitude, capsys, tmp_path):
    deep: dict = {}
    node = deep
    for _ in range(45):  # Amplitude refuses objects nested deeper than 40
        node["x"] = {}
        node = node["x"]
    node["x"] = 1
    schema = {"type": "object", "properties": {"id": {"type": "string"}, "meta": {"type": "object"}}}
    rows = [
        {"type": "RECORD", "stream": "users", "record": {"id": str(i), "meta": {"ok": i}}} for i in range(9)
    ]
    rows[5]["record"]["meta"] = deep
    rejected = tmp_path / "rejected.jsonl"
    states = run_target(
        {"rejected_file": str(rejected)}, singer(schema_msg("users", schema, ("id",)), *rows, STATE), capsys
    )
    assert states == [STATE["value"]]
    assert sorted(amplitude.groups()["users"]) == ["0", "1", "2", "3", "4", "6", "7", "8"]
    lines = [json.loads(line) for line in rejected.read_text().splitlines()]
    assert [(r["identification"]["group_value"], r["status"]) for r in lines] == [("5", 400)]


def test_invalid_api_key_fails_at_once_without_leaking_it(amplitude, capsys, caplog):
    with pytest.raises(InvalidApiKey) as exc:
        run_target(
            {"api_key": "wrong-secret-key", "mapping": MAPPING}, singer(schema_msg(), record(1)), capsys
        )
    assert len(amplitude.requests) == 1  # no retries, no bisecting
    assert "check api_key" in str(exc.value)
    assert "wrong-secret-key" not in str(exc.value) + caplog.text + capsys.readouterr().err


def test_dry_run_sends_nothing(amplitude, capsys, tmp_path):
    out = tmp_path / "dry.jsonl"
    run_target(
        {"mapping": MAPPING, "dry_run": True, "dry_run_file": str(out)},
        singer(schema_msg(), *[record(i) for i in range(400)]),
        capsys,
    )
    assert amplitude.requests == []
    requests = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(requests) == 3
    assert sum(len(r["identification"]) for r in requests) == 400


def test_deleted_and_unmapped_records(amplitude, capsys):
    lines = singer(
        schema_msg(),
        record(1, IsDeleted=True),
        record(2),
        schema_msg("Contact", {"type": "object", "properties": {"Id": {"type": "string"}}}),
        {"type": "RECORD", "stream": "Contact", "record": {"Id": "003"}},
    )
    run_target({"mapping": MAPPING}, lines, capsys)
    assert list(amplitude.groups()) == ["org id"]
    assert list(amplitude.groups()["org id"]) == ["001000000000000002"]
    run_target(
        {"mapping": MAPPING, "deleted_records": "flag"},
        singer(schema_msg(), record(1, IsDeleted=True)),
        capsys,
    )
    assert amplitude.groups()["org id"]["001000000000000001"]["deleted"] is True


def test_mapping_problems_fail_before_any_request(amplitude, capsys):
    from singer_sdk.exceptions import ConfigValidationError

    bad = {
        "version": 1,
        "mappings": [{"object": "Account", "group_type": "", "group_name_field": "Id", "properties": []}],
    }
    with pytest.raises(ConfigValidationError) as exc:
        run_target({"mapping": bad}, "", capsys)
    assert exc.value.errors == [
        "1: Account -> Unknown: group mapping is missing group type",
        "1: Account -> Unknown: group mapping has no group properties",
    ]
    assert amplitude.requests == []


def test_a_failed_batch_blocks_state(amplitude, capsys):
    amplitude.faults.add(Fault(status=503, count=1, path="/groupidentify"))
    lines = singer(schema_msg(), *[record(i) for i in range(6)], STATE)
    with pytest.raises(AmplitudeError):
        run_target({"mapping": MAPPING, "max_retries": 0, "batch_size_rows": 2}, lines, capsys)
    assert "bookmarks" not in capsys.readouterr().out


def test_a_schema_change_sends_the_retired_sinks_tail(amplitude, capsys):
    changed = {**ACCOUNT_SCHEMA, "properties": {**ACCOUNT_SCHEMA["properties"], "Extra": {"type": "string"}}}
    lines = singer(
        schema_msg(),
        *[record(i) for i in range(150)],
        schema_msg(schema=changed),
        *[record(i) for i in range(150, 160)],
        STATE,
    )
    run_target({"mapping": MAPPING, "batch_size_rows": 100}, lines, capsys)
    assert len(amplitude.groups()["org id"]) == 160


def test_the_newest_update_of_a_group_wins_across_batches(amplitude, capsys):
    lines = singer(
        schema_msg(), record(1, Name="old"), *[record(i) for i in range(2, 5)], record(1, Name="new"), STATE
    )
    run_target({"mapping": MAPPING, "batch_size_rows": 4, "max_concurrency": 8}, lines, capsys)
    assert amplitude.groups()["org id"]["001000000000000001"]["account name"] == "new"


def test_413_splits_the_request_and_resets_are_retried(amplitude, capsys):
    amplitude.faults.add(
        Fault(status=413, count=1, path="/groupidentify", body={"code": 413, "error": "Payload too large"})
    )
    amplitude.faults.add(Fault(kind="disconnect", count=1, path="/groupidentify"))
    states = run_target(
        {"mapping": MAPPING}, singer(schema_msg(), *[record(i) for i in range(10)], STATE), capsys
    )
    assert states == [STATE["value"]]
    assert len(amplitude.groups()["org id"]) == 10
    sizes = [r["identifications"] for r in amplitude.requests if r["status"] == 200]
    assert sorted(sizes) == [5, 5]


def test_region_selects_the_endpoint():
    from target_amplitude_groups.client import REGION_URLS

    eu = TargetAmplitudeGroups(config={"api_key": "k", "region": "eu"})
    assert eu.delivery.client.api_url == REGION_URLS["eu"] == "https://api.eu.amplitude.com/groupidentify"
    assert (
        TargetAmplitudeGroups(config={"api_key": "k"}).delivery.client.api_url
        == "https://api2.amplitude.com/groupidentify"
    )


def test_the_run_ends_with_one_summary_line(amplitude, capsys, caplog):
    caplog.set_level(logging.INFO)
    lines = singer(
        schema_msg(), record(1, Name="x" * 2000), record(2, IsDeleted=True), record(3, Id=""), STATE
    )
    run_target({"mapping": MAPPING}, lines, capsys)
    summaries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Summary")]
    assert summaries == [
        "Summary: 1 group sent in 1 request, 0 retries, 0.0s throttled, 1 skipped, 0 rejected, "
        "0 values refused, 1 deleted row ignored, 1 value truncated, concurrency 4"
    ]
