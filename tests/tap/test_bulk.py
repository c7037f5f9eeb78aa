"""Bulk API 2.0 reads: the same records as REST, chosen by api_type and bulk_threshold."""

from __future__ import annotations

import copy

import pytest

from emulators._server import Fault
from tests.tap.conftest import MAPPING, run_tap

# Bulk queries cannot select compound fields: this mapping has none.
NO_COMPOUND = copy.deepcopy(MAPPING)
NO_COMPOUND["mappings"][0]["properties"] = [
    p for p in NO_COMPOUND["mappings"][0]["properties"] if p["field"] != "BillingAddress"
]


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


def test_compound_fields_keep_rest(salesforce, capsys, caplog):
    run = run_tap(capsys, api_type="bulk")
    assert "compound fields ['BillingAddress'] need the REST API" in caplog.text
    assert any(r["BillingAddress"] for r in run.records["Account"])
    bulk_queries = [r["query"] for r in salesforce.requests if "/jobs/query" in r["path"] and r.get("query")]
    assert all("FROM Account" not in q for q in bulk_queries)
    assert any("FROM Subscription__c" in q for q in bulk_queries)


def test_a_failed_bulk_job_fails_the_run_clearly(salesforce, capsys, caplog):
    salesforce.faults.add(Fault(kind="bulk_job_failed", path="/jobs/query"))
    with pytest.raises(SystemExit):
        run_tap(capsys, mapping=NO_COMPOUND, api_type="bulk")
    assert "Bulk API 2.0 query on Account" in caplog.text
