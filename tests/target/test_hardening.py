"""Issue 17, target side: wrong values that passed silently, and failures that skipped the report.

One test (or a few) per numbered point of the issue. Amplitude's limit of 1000 group properties
per project, past which properties are stored but not indexed, is from Amplitude's "Account-level
reporting" documentation (docs/reference/amplitude-api.md [S7][S8]).
"""

from __future__ import annotations

import json
import logging
import resource
import signal
from pathlib import Path

import pytest
from singer_sdk.exceptions import ConfigValidationError

from emulators._server import Fault
from emulators.amplitude import API_KEY
from tests.mappings import document, group
from tests.support.target import BASE_CONFIG, run_target, singer
from tests.target.test_data_safety import run_cli
from tests.target.test_target import MAPPING, STATE, record, schema_msg

# -- 1. deleted_records: flag ---------------------------------------------------------------------
ACCOUNT = group("Account", "org id", "Id", (("Name", "account name"),))
SUBSCRIPTION = group("Subscription__c", "org id", "Account__c", (("Plan__c", "plan"),))
SUBSCRIPTION_SCHEMA = {
    "type": "object",
    "properties": {
        "Id": {"type": "string"},
        "Account__c": {"type": ["string", "null"]},
        "Plan__c": {"type": ["string", "null"]},
        "IsDeleted": {"type": ["boolean", "null"]},
    },
}


def subscription(sub_id: str, account: str, plan: str, *, deleted: bool) -> dict:
    row = {"Id": sub_id, "Account__c": account, "Plan__c": plan, "IsDeleted": deleted}
    return {"type": "RECORD", "stream": "Subscription__c", "record": row}


def test_the_flag_property_is_a_setting_checked_against_every_mapped_property(amplitude, capsys):
    clash = document(group("Account", "org id", "Id", (("Name", "account name"), ("IsActive__c", "deleted"))))
    with pytest.raises(ConfigValidationError) as exc:
        run_target({"mapping": clash, "deleted_records": "flag"}, "", capsys)
    assert exc.value.errors == [
        "1: Account -> org id: the deleted_records flag 'deleted' of group type 'org id' is also a group "
        "property of 1: Account -> org id; set deleted_property to another name"
    ]
    with pytest.raises(ConfigValidationError):
        run_target(
            {"mapping": MAPPING, "deleted_records": "flag", "deleted_property": "$deleted"}, "", capsys
        )
    # another name resolves it; the mapped 'deleted' property keeps its value
    lines = singer(schema_msg(), record(1, IsActive__c=True), record(2, IsDeleted=True))
    run_target({"mapping": clash, "deleted_records": "flag", "deleted_property": "is deleted"}, lines, capsys)
    groups = amplitude.groups()["org id"]
    assert groups["001000000000000001"] == {"account name": "Account 1", "deleted": True, "is deleted": False}
    assert groups["001000000000000002"] == {"is deleted": True}
    assert amplitude.requests, "sent"


def test_a_deleted_row_in_flag_mode_sends_only_the_flag(amplitude, capsys):
    run_target({"mapping": MAPPING, "deleted_records": "flag"}, singer(schema_msg(), record(1)), capsys)
    run_target(
        {"mapping": MAPPING, "deleted_records": "flag"},
        singer(schema_msg(), record(1, IsDeleted=True, Name="Renamed before deletion")),
        capsys,
    )
    group_ = amplitude.groups()["org id"]["001000000000000001"]
    assert group_["deleted"] is True
    assert group_["account name"] == "Account 1"  # not the deleted row's values


def test_a_deleted_child_row_never_flags_its_live_parents_group(amplitude, capsys):
    mapping = document(ACCOUNT, SUBSCRIPTION)
    lines = singer(
        schema_msg(),
        record(1),
        schema_msg("Subscription__c", SUBSCRIPTION_SCHEMA),
        subscription("a0S1", "001000000000000001", "Gold", deleted=False),
        subscription("a0S2", "001000000000000001", "Platinum", deleted=True),
    )
    run_target({"mapping": mapping, "deleted_records": "flag"}, lines, capsys)
    account = amplitude.groups()["org id"]["001000000000000001"]
    # Two objects feed 'org id': each flags its own property, and the deleted subscription's plan
    # is not set on the account.
    assert account == {
        "account name": "Account 1",
        "Account deleted": False,
        "plan": "Gold",
        "Subscription__c deleted": True,
    }
    assert "deleted" not in account


# -- 4. Generic mode (no mapping) ---------------------------------------------------------------
def generic(stream: str, schema: dict, rows: list[dict], key: str = "id") -> str:
    return singer(
        {"type": "SCHEMA", "stream": stream, "schema": schema, "key_properties": [key]},
        *({"type": "RECORD", "stream": stream, "record": row} for row in rows),
    )


def test_a_key_that_is_an_object_or_array_skips_the_row_with_a_counted_warning(amplitude, capsys, caplog):
    schema = {"type": "object", "properties": {"id": {}, "name": {"type": "string"}}}
    rows = [{"id": {"a": 1}, "name": "x"}, {"id": [1, 2], "name": "y"}, {"id": "ok", "name": "z"}]
    caplog.set_level(logging.INFO)
    run_target({}, generic("company", schema, rows), capsys)
    assert amplitude.groups() == {"company": {"ok": {"name": "z"}}}
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Skipped: ")]
    assert len(skipped) == 2
    assert "group name field 'id' holds an object, not a value" in skipped[0]
    assert "holds an array" in skipped[1]
    summary = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("Summary"))
    assert "1 group sent" in summary and "2 skipped" in summary


def test_past_1000_properties_warn_once_and_partial_updates_count_as_groups(amplitude, capsys, caplog):
    fields = [f"f{n}" for n in range(1100)]
    schema = {
        "type": "object",
        "properties": {"id": {"type": "string"}, **{f: {"type": "integer"} for f in fields}},
    }
    rows = [{"id": f"g{i}", **dict.fromkeys(fields, i)} for i in range(3)]
    caplog.set_level(logging.INFO)
    run_target({}, generic("wide", schema, rows) + generic("wide2", schema, rows[:1]), capsys)
    warnings = [r.getMessage() for r in caplog.records if "not indexed" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith("Without a mapping the streams define 1100 distinct properties")
    assert len(amplitude.groups()["wide"]["g2"]) == 1100  # sent as two partial updates
    summary = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("Summary"))
    assert summary.startswith("Summary: 4 groups sent in ")  # not 8: each group is one group


def test_a_target_without_a_mapping_says_so_once_at_start(amplitude, capsys, caplog):
    caplog.set_level(logging.INFO)
    schema = {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}}}
    run_target({}, generic("company", schema, [{"id": "a", "name": "A"}]), capsys)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("No mapping set")]
    assert len(lines) == 1
    caplog.clear()
    run_target({"mapping": MAPPING}, "", capsys)
    assert not [r for r in caplog.records if r.getMessage().startswith("No mapping set")]


# -- 5. Every failure ends with one line, the Summary and the report --------------------------------
def test_an_unparseable_date_is_left_out_recorded_and_the_rest_sent(amplitude, capsys, tmp_path):
    rejected = tmp_path / "rejected.jsonl"
    lines = singer(schema_msg(), record(1, CreatedDate="0000-00-00 00:00:00"), record(2), STATE)
    states = run_target({"mapping": MAPPING, "rejected_file": str(rejected)}, lines, capsys)
    assert states == [STATE["value"]]
    groups = amplitude.groups()["org id"]
    assert "date" not in groups["001000000000000001"]
    assert groups["001000000000000001"]["account name"] == "Account 1"
    assert groups["001000000000000002"]["date"] == "2025-03-04T05:06:07.000+00:00"
    problems = [json.loads(line) for line in rejected.read_text().splitlines()]
    assert problems == [
        {
            "kind": "value",
            "group_type": "org id",
            "group_value": "001000000000000001",
            "property": "date",
            "reason": "'0000-00-00 00:00:00' is not a valid date-time",
        }
    ]


def failed_run(
    tmp_path: Path, lines: str, config: dict | None = None, **popen: object
) -> tuple[int, str, dict]:
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"status": "ok"}))  # the previous run's
    process = run_cli(
        {"mapping": MAPPING, "report_file": str(report), **(config or {})}, lines, tmp_path, **popen
    )
    _, err = process.communicate(timeout=60)
    return process.returncode, err, json.loads(report.read_text())


def assert_one_line_failure(err: str, message: str) -> None:
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if message in line]
    assert len(errors) == 1, err[-3000:]
    assert "Summary: " in err and err.index("Summary: ") > err.index(message)
    assert "(failed)" in err


def test_a_record_before_its_schema_is_one_line_with_the_summary_and_a_failed_report(amplitude, tmp_path):
    code, err, report = failed_run(tmp_path, singer(record(1), schema_msg(), record(2)))
    assert code == 1
    assert_one_line_failure(err, "Account")
    assert report["status"] == "failed" and "Account" in report["error"]


def test_a_batch_message_is_refused_and_its_file_never_opened(amplitude, tmp_path):
    manifest = tmp_path / "batch.jsonl"
    manifest.write_text(json.dumps(record(999_999)["record"]) + "\n")
    batch = {
        "type": "BATCH",
        "stream": "Account",
        "encoding": {"format": "jsonl", "compression": "none"},
        "manifest": [manifest.as_uri()],
    }
    code, err, report = failed_run(tmp_path, singer(schema_msg(), batch, STATE))
    assert code == 1
    assert_one_line_failure(err, "BATCH messages are not supported")
    assert report["status"] == "failed"
    # (requests of earlier tests may still arrive: only this group's absence is this test's)
    assert "001000000000999999" not in amplitude.groups().get("org id", {})


def _file_size_limit(limit: int):
    def apply() -> None:
        # A full disk, as the process sees it: writes past `limit` bytes fail (EFBIG) instead of
        # raising SIGXFSZ, which is ignored (an ignored disposition survives exec).
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_under_rejected_file_is_one_line_and_no_state(amplitude, tmp_path):
    rejected = tmp_path / "rejected.jsonl"
    rejected.write_text("x" * 3990 + "\n")  # the next line cannot fit under the 4000-byte limit
    lines = singer(schema_msg(), record(1, AnnualRevenue=float("nan")), record(2), STATE).replace(
        "NaN", "1e999"
    )
    code, err, report = failed_run(
        tmp_path, lines, {"rejected_file": str(rejected)}, preexec_fn=_file_size_limit(4000)
    )
    assert code == 1
    assert_one_line_failure(err, f"cannot write {rejected}")
    assert report["status"] == "failed"


def test_a_full_disk_under_report_file_is_one_line_and_leaves_no_temporary_file(amplitude, tmp_path):
    report = tmp_path / "report.json"
    process = run_cli(
        {"mapping": MAPPING, "report_file": str(report)},
        singer(schema_msg(), record(1), STATE),
        tmp_path,
        preexec_fn=_file_size_limit(200),  # the report needs more
    )
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if f"cannot write report_file {report}" in line]) == 1
    assert "bookmarks" in out  # the run itself was delivered: its STATE stands
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_any_unexpected_exception_still_ends_with_the_summary_and_report(amplitude, tmp_path):
    # A record without its key property: the SDK fails on it with an exception of its own.
    keyless = {"type": "RECORD", "stream": "Account", "record": {"Name": "no id"}}
    code, err, report = failed_run(tmp_path, singer(schema_msg(), record(1), keyless))
    assert code == 1
    assert "Traceback" not in err
    assert "Summary: " in err and "(failed)" in err
    assert report["status"] == "failed" and report["error"]


def test_a_run_refused_at_start_still_rewrites_the_report(amplitude, tmp_path):
    # README: report_file is "rewritten at the end of every run, failed or not". Bad settings and a
    # bad mapping end the run before it starts; an earlier run's "ok" must not stay.
    bad_mapping = {**document(group("Account", "org id", "Id", (("Name", "name"),))), "version": 99}
    cases = {
        "api_url": ({"api_url": "http://amplitude.example/groupidentify"}, "api_url"),
        "mapping": ({"mapping": bad_mapping}, "version"),
        "key in an error": ({"max_concurrency": 0}, "max_concurrency"),
    }
    for name, (config, named) in cases.items():
        case = tmp_path / name.replace(" ", "-")
        case.mkdir()
        code, err, report = failed_run(case, singer(schema_msg(), record(1), STATE), config)
        assert code == 1, name
        assert "Traceback" not in err, name
        assert report["status"] == "failed", name
        assert report["error"].startswith("Config validation failed: ") and named in report["error"], name
        assert report["groups_sent"] == 0 and report["requests"] == 0, name
        assert API_KEY not in (case / "report.json").read_text(), name
    assert amplitude.requests == []


def test_a_failure_while_the_target_is_made_ends_with_the_summary_and_report(
    amplitude, tmp_path, monkeypatch, caplog
):
    # Not a settings problem (the SDK lists those), but any error while the target is made: one
    # line, the summary and the report, the API key redacted from both.
    from types import SimpleNamespace

    from target_amplitude_groups.target import TargetAmplitudeGroups

    def broken(self: TargetAmplitudeGroups) -> None:
        raise RuntimeError(f"no signal handlers for key {self.config['api_key']}")

    monkeypatch.setattr(TargetAmplitudeGroups, "_trap_signals", broken)
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"status": "ok"}))
    config = {**BASE_CONFIG, "mapping": MAPPING, "report_file": str(report)}
    with pytest.raises(SystemExit) as exit_info:
        TargetAmplitudeGroups.invoke(config=SimpleNamespace(config=config, parse_env=False), file_input=None)
    assert exit_info.value.code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors[0] == "RuntimeError: no signal handlers for key ***"
    assert any(e.startswith("Summary: 0 groups sent") and e.endswith("(failed)") for e in errors)
    saved = json.loads(report.read_text())
    assert saved["status"] == "failed" and saved["error"] == "RuntimeError: no signal handlers for key ***"
    assert API_KEY not in report.read_text() and all(API_KEY not in e for e in errors)


# -- 9. "Checkpoint" is logged when STATE is written ------------------------------------------------
def test_no_checkpoint_is_logged_for_a_state_that_was_never_written(amplitude, capsys, caplog):
    caplog.set_level(logging.INFO)
    amplitude.faults.add(Fault(status=503, count=100, path="/groupidentify"))
    with pytest.raises(Exception, match="gave up"):
        run_target({"mapping": MAPPING, "max_retries": 0}, singer(schema_msg(), record(1), STATE), capsys)
    assert not [r for r in caplog.records if r.getMessage().startswith("Checkpoint")]


def test_the_checkpoint_line_counts_what_was_acknowledged_when_state_was_written(amplitude, capsys, caplog):
    caplog.set_level(logging.INFO)
    lines = singer(schema_msg(), *[record(i) for i in range(5)], STATE)
    assert run_target({"mapping": MAPPING}, lines, capsys) == [STATE["value"]]
    checkpoints = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Checkpoint")]
    assert checkpoints == [
        "Checkpoint: 5 groups delivered and acknowledged; STATE Account bookmark=x",
    ]


# -- 7. A run the tap stopped early is reported as partial ------------------------------------------
def test_the_report_says_partial_when_the_taps_state_does(amplitude, capsys, caplog, tmp_path):
    report = tmp_path / "report.json"
    reason = "Salesforce API usage is 9/400 (2.2%), at or above max_api_usage_percent=1"
    partial = {
        "type": "STATE",
        "value": {**STATE["value"], "partial": {"reason": reason, "unread": ["Contact"]}},
    }
    caplog.set_level(logging.INFO)
    run_target(
        {"mapping": MAPPING, "report_file": str(report)}, singer(schema_msg(), record(1), partial), capsys
    )
    saved = json.loads(report.read_text())
    assert saved["status"] == "partial"
    assert saved["error"] == reason
    assert any(r.getMessage().endswith(f"(partial: {reason})") for r in caplog.records)
