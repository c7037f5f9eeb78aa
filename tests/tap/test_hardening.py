"""Issue 17, tap side: one line instead of a traceback, the API budget, Bulk jobs on a signal.

The tap runs as a real process (``python -m tap_salesforce_groups``) where exit codes and
stderr lines matter, and in-process where the Singer messages do.
"""

from __future__ import annotations

import json
import re
import signal
import time

import pytest

from emulators._server import Fault
from tests.support.tap import CONFIG, MAPPING, run_tap
from tests.tap.test_run_safety import run_cli, tap_process

JOB = re.compile(r"/services/data/v[0-9.]+/jobs/query/[A-Za-z0-9]+")


# -- 6. One line, not a traceback -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"bookmarks": []}, "--state: 'bookmarks' must be an object of streams, not list"),
        ({"bookmarks": {"Account": 5}}, "--state: the bookmark of Account must be an object, not int"),
        (
            {
                "bookmarks": {
                    "Account": {"replication_key_value": "2025-01-01T00:00:00Z", "ids_at_bookmark": 5}
                }
            },
            "--state: ids_at_bookmark of Account must be a list of Ids, not int",
        ),
        (
            {"bookmarks": {"Account": {"replication_key_value": 20250101}}},
            "--state: the bookmark of Account must be a timestamp string, not int",
        ),
    ],
)
def test_a_state_of_the_wrong_shape_is_one_line(salesforce, tmp_path, state, message):
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state), encoding="utf-8")
    result = run_cli(tmp_path, CONFIG, "--state", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if message in line], result.stderr[-2000:]
    assert result.stdout == ""
    # No query started. (A cursor page, /query/<locator>, may still arrive from an earlier test
    # whose held request outlived it; it cannot come from a run that never queried.)
    assert [r for r in salesforce.requests if r["path"].endswith(("/query", "/queryAll"))] == []


def test_a_bulk_row_with_the_wrong_number_of_columns_names_the_job_and_line(salesforce, tmp_path):
    # A damaged results page (cut by a proxy, or a value that broke the CSV): its cells would land
    # in the wrong fields. Salesforce's Bulk API 2.0 results are CSV with a header line and one
    # line per record ("Get Results for a Query Job", Bulk API 2.0 Developer Guide).
    header = '"Id","Name","SystemModstamp","IsDeleted"\n'
    good = '"001000000000000001","Acme","2025-01-01T00:00:00.000+0000","false"\n'
    page = header + good + '"001000000000000002","Globex","2025-01-01T00:00:00.000+0000","false","x"\n'
    salesforce.faults.add(Fault(status=200, body=page, path="/results", headers={"Sforce-Locator": "null"}))
    mapping = {"version": 1, "mappings": [MAPPING["mappings"][0] | {"properties": [{"field": "Name"}]}]}
    result = run_cli(tmp_path, {**CONFIG, "mapping": mapping, "api_type": "bulk"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    job = next(r["path"] for r in salesforce.requests if "/results" in r["path"]).split("/")[-2]
    lines = [line for line in result.stderr.splitlines() if f"Bulk API 2.0 job {job} on Account" in line]
    assert lines and "results page 1, line 3 has 5 columns where the header has 4" in lines[0]


def test_an_org_out_of_api_calls_is_one_line_not_a_mapping_mismatch(salesforce, tmp_path):
    # Salesforce answers 403 REQUEST_LIMIT_EXCEEDED ("TotalRequests Limit exceeded.") once the
    # org's daily API requests are spent (the reference's error table; simple-salesforce raises
    # SalesforceGeneralError for it). That is not the mapping's fault: it must not read
    # "mapping does not match the Salesforce org".
    salesforce.api_max = salesforce.api_calls + 2  # the login and one describe, then the limit
    try:
        result = run_cli(tmp_path, {**CONFIG, "api_type": "rest"}, "--discover")
    finally:
        salesforce.api_max = 1_000_000
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "mapping does not match" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "REQUEST_LIMIT_EXCEEDED" in line]
    assert len(errors) == 1 and "describe" in errors[0], result.stderr[-2000:]


# -- 7. The API budget: exit 75, a partial STATE, and no object starves -----------------------------
def test_a_budget_stop_exits_75_and_the_skipped_objects_are_read_first_next_time(
    salesforce, tmp_path, capsys
):
    # Sforce-Limit-Info: api-usage=USED/MAX on every answer (REST API Developer Guide, "Limit Info
    # Header"); the emulator counts each call against api_max.
    salesforce.api_max = 400  # a few calls already use more than 1% of it
    try:
        result = run_cli(tmp_path, {**CONFIG, "max_api_usage_percent": 1, "api_type": "rest"})
    finally:
        salesforce.api_max = 1_000_000
    assert result.returncode == 75, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    messages = [json.loads(line) for line in result.stdout.splitlines()]
    state = [m["value"] for m in messages if m["type"] == "STATE"][-1]
    assert state["partial"]["unread"] == ["Subscription__c"]
    assert "max_api_usage_percent" in state["partial"]["reason"]
    assert state["bookmarks"]["Account"]["replication_key_value"]  # what was read is kept
    assert {m["stream"] for m in messages if m["type"] == "RECORD"} == {"Account"}

    # The next run reads Subscription__c first, so another integration that keeps the org near
    # the budget cannot starve it behind Account forever; a complete run's STATE is not partial.
    run = run_tap(capsys, state=state, api_type="rest")
    assert run.exit_code == 0
    assert list(run.schemas) == ["Subscription__c", "Account"]
    assert run.state["partial"] is None  # overwrites the mark where Meltano merges states


# -- 8. A signal while a Bulk job is polled aborts and deletes the job -------------------------------
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_while_a_bulk_job_runs_aborts_and_deletes_it(salesforce, tmp_path, signum, code):
    # Salesforce deletes only a terminated job ("Delete a Query Job": JobComplete, Aborted or
    # Failed) and aborts a running one with PATCH {"state": "Aborted"} ("Abort a Query Job",
    # Bulk API 2.0 Developer Guide); the emulator answers the same.
    salesforce.bulk.delay = 120.0  # the job runs for two minutes
    try:
        process = tap_process(tmp_path, {**CONFIG, "api_type": "bulk"})
        deadline = time.monotonic() + 60
        while not [r for r in salesforce.requests if r["method"] == "GET" and JOB.fullmatch(r["path"])]:
            assert time.monotonic() < deadline, "the tap never polled its job"
            time.sleep(0.05)
        time.sleep(0.3)  # now in the wait between polls
        sent = time.monotonic()
        process.send_signal(signum)
        _, err = process.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        salesforce.bulk.delay = 0.0
    assert process.returncode == code
    assert "Traceback" not in err
    assert took < 10, f"the stop took {took:.1f}s: the poll wait did not end"
    job_requests = [(r["method"], r["status"]) for r in salesforce.requests if JOB.fullmatch(r["path"])]
    assert ("PATCH", 200) in job_requests and ("DELETE", 204) in job_requests, job_requests
    assert "aborted and deleted" in err


def test_the_states_this_tap_writes_have_the_right_shape(salesforce, capsys):
    from tap_salesforce_groups.tap import state_shape_problems

    run = run_tap(capsys, api_type="rest")
    assert state_shape_problems(run.state) == []
    legacy = {
        "bookmarks": {
            "Account": {"replication_key_value": "2025-01-01T00:00:00Z", "ids_at_bookmark": ["001"]}
        }
    }
    assert state_shape_problems(legacy) == []


def test_a_page_cut_short_while_it_downloads_fails_with_one_line_naming_it(salesforce, tmp_path):
    # The tap asks for the next page once a page's head arrived and downloads the rest while it
    # writes the records: a connection that drops mid-body then ends the run with one line that
    # says so, after the records before it, instead of a traceback or "cannot reach".
    salesforce.faults.add(Fault(kind="cut_body", path="/query/"))  # the first nextRecordsUrl page
    result = run_cli(tmp_path, {**CONFIG, "api_type": "rest"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "broke while an answer downloaded" in line]
    assert lines, result.stderr[-2000:]
    assert (
        "Stopping: queryAll (next page): the connection to Salesforce broke while an answer downloaded "
        in lines[0]
    )
    assert re.search(r"\(Connection broken: IncompleteRead\(\d+ bytes read, \d+ more expected\)\)$", lines[0])
    records = [json.loads(line) for line in result.stdout.splitlines() if '"RECORD"' in line]
    assert records  # the first page was written before the second one failed
