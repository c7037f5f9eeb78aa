"""Bulk API 2.0 reads: the same records as REST, chosen by api_type and bulk_threshold."""

from __future__ import annotations

import copy

from emulators._server import Fault
from tests.tap.conftest import MAPPING, run_tap

NO_COMPOUND = copy.deepcopy(MAPPING)  # compound fields are refused now; every mapping is Bulk-able


def used_bulk(salesforce) -> bool:
    return any("/jobs/query" in r["path"] for r in salesforce.requests)


def test_bulk_reads_exactly_what_rest_reads(salesforce, capsys):
    rest = run_tap(capsys, mapping=NO_COMPOUND, api_type="rest")
    assert not used_bulk(salesforce)
    bulk = run_tap(capsys, mapping=NO_COMPOUND, api_type="bulk")
    assert used_bulk(salesforce)
    assert bulk.records == rest.records  # same rows, order, values and types
    assert bulk.state == rest.state
    again = run_tap(capsys, state=bulk.state, mapping=NO_COMPOUND, api_type="bulk")
    assert again.records == {}


def test_auto_uses_bulk_from_the_threshold(salesforce, capsys):
    run_tap(capsys, mapping=NO_COMPOUND, bulk_threshold=10**6)
    assert not used_bulk(salesforce)
    salesforce.reset()
    run = run_tap(capsys, mapping=NO_COMPOUND, bulk_threshold=100)
    assert used_bulk(salesforce)
    assert len(run.records["Account"]) == len(salesforce.org.rows("Account"))


def test_a_failed_bulk_job_is_read_again_in_smaller_windows(salesforce, capsys, caplog):
    # Issue 7.3: a failed job (here QUERY_TIMEOUT) no longer ends the run; the object is read
    # in SystemModstamp windows that halve, with the bookmark moving per row.
    expected = run_tap(capsys, mapping=NO_COMPOUND, api_type="rest")
    salesforce.faults.add(Fault(kind="bulk_job_failed", path="/jobs/query"))
    run = run_tap(capsys, mapping=NO_COMPOUND, api_type="bulk")
    assert run.exit_code == 0
    assert "reading in windows of" in caplog.text
    assert sorted(r["Id"] for r in run.records["Account"]) == sorted(
        r["Id"] for r in expected.records["Account"]
    )
    windowed = [q for q in (r["query"] for r in salesforce.requests) if q and "SystemModstamp <" in q]
    assert windowed
