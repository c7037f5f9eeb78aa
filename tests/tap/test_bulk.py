"""Bulk API 2.0 reads: the same records as REST, chosen by api_type and bulk_threshold."""

from __future__ import annotations

import copy
import logging

import pytest

import tap_salesforce_groups.client as client_module
from emulators._server import Fault
from tap_salesforce_groups.client import SalesforceClient
from tap_salesforce_groups.errors import QueryTooBig
from tap_salesforce_groups.timestamps import iso_datetime
from tests.support.tap import MAPPING, by_id, run_tap, settings

NO_COMPOUND = copy.deepcopy(MAPPING)  # compound fields are refused now; every mapping is Bulk-able


def used_bulk(salesforce) -> bool:
    return any("/jobs/query" in r["path"] for r in salesforce.requests)


def bulk_queries(salesforce) -> list[str]:
    """The SOQL of every Bulk job created."""
    return [r["query"] for r in salesforce.requests if r["path"].endswith("/jobs/query") and r["query"]]


def test_bulk_reads_exactly_what_rest_reads(salesforce, capsys):
    rest = run_tap(capsys, mapping=NO_COMPOUND, api_type="rest")
    assert not used_bulk(salesforce)
    bulk = run_tap(capsys, mapping=NO_COMPOUND, api_type="bulk")
    assert used_bulk(salesforce)
    assert by_id(bulk.records) == by_id(rest.records)  # same rows, values and types
    # Bulk queries leave ORDER BY out (it turns PK chunking off), so rows come in Salesforce's
    # order, not the bookmark's; the bookmark still ends where REST's does.
    assert [r["Id"] for r in bulk.records["Account"]] != [r["Id"] for r in rest.records["Account"]]
    assert not [q for q in bulk_queries(salesforce) if "ORDER BY" in q]

    def position(state: dict) -> dict:  # the bookmark and the rows remembered at it
        return {s: (b["replication_key_value"], b["emitted"]) for s, b in state["bookmarks"].items()}

    assert position(bulk.state) == position(rest.state)
    again = run_tap(capsys, state=bulk.state, mapping=NO_COMPOUND, api_type="bulk")
    assert again.records == {}


def test_auto_uses_bulk_from_the_threshold(salesforce, capsys, caplog):
    caplog.set_level(logging.INFO)
    run_tap(capsys, mapping=NO_COMPOUND, bulk_threshold=10**6)
    assert not used_bulk(salesforce)
    # The count line names the API the rows are then read through, as the query line does.
    assert "rows to read through REST (Bulk API 2.0 from bulk_threshold 1000000)" in caplog.text
    assert "Bulk API 2.0 from 1000000)" not in caplog.text.replace("bulk_threshold 1000000)", "")
    salesforce.reset()
    caplog.clear()
    run = run_tap(capsys, mapping=NO_COMPOUND, bulk_threshold=100)
    assert used_bulk(salesforce)
    assert len(run.records["Account"]) == len(salesforce.org.rows("Account"))
    assert "rows to read through Bulk API 2.0 (bulk_threshold 100)" in caplog.text
    assert "Querying Account (Bulk API 2.0)" in caplog.text


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


# -- issue 7.3: Bulk queries without ORDER BY, the bookmark committed per window ----------------
# Salesforce: "Use of ORDER BY in a Bulk 2.0 query disables PKChunking for the query. With
# PKChunking disabled, the query takes longer to execute, and potentially results in query
# timeouts" (https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/bulk_api_2_0_troubleshoot_query_timeouts.htm).
# The emulator therefore times out sorted Bulk jobs over query_timeout_rows, while unsorted
# ones are PK-chunked and come back chunk by chunk in no bookmark order.


def account_rows(salesforce) -> dict[str, str]:
    """Id -> SystemModstamp as the tap writes it, for every Account row (deleted ones too)."""
    return {
        r["Id"]: iso_datetime(r["SystemModstamp"])
        for r in salesforce.org.rows("Account")  # queryAll: deleted rows too
    }


def test_pk_chunking_reads_an_object_that_a_sorted_query_times_out_on(salesforce, capsys, caplog):
    salesforce.query_timeout_rows = 80
    salesforce.bulk.pk_chunk_rows = 64  # several chunks, handed back out of order
    run = run_tap(capsys, mapping=NO_COMPOUND, api_type="bulk")
    assert run.exit_code == 0
    assert "reading in windows" not in caplog.text  # one job per object, no QUERY_TIMEOUT
    assert sorted(r["Id"] for r in run.records["Account"]) == sorted(account_rows(salesforce))
    assert [q for q in bulk_queries(salesforce) if "ORDER BY" in q] == []
    newest = max(r["SystemModstamp"] for r in run.records["Account"])
    assert run.state["bookmarks"]["Account"]["replication_key_value"] == newest


def test_the_emulator_times_out_a_sorted_bulk_query_as_salesforce_may(salesforce, capsys):
    salesforce.query_timeout_rows = 80
    soql = "SELECT Id FROM Account ORDER BY SystemModstamp ASC, Id ASC"
    client = SalesforceClient(settings(api_type="bulk"), logging.getLogger("test"))
    with pytest.raises(QueryTooBig, match="QUERY_TIMEOUT"):
        list(client.bulk_pages("Account", soql, include_deleted=True))
    assert list(client.bulk_pages("Account", "SELECT Id FROM Account", include_deleted=True))


def test_an_unsorted_bulk_read_stopped_midway_does_not_move_the_bookmark(salesforce, capsys, monkeypatch):
    # Rows of an unsorted job come in any order: a bookmark at the newest row emitted so far
    # would skip older rows not yet read. The SDK itself promotes that high-water mark when a
    # stream ends, so this also checks that the stream takes it back.
    monkeypatch.setattr(client_module, "BULK_PAGE_ROWS", 10)
    first_state = run_tap(capsys, mapping=NO_COMPOUND, api_type="bulk").state
    salesforce.reset()
    old = first_state["bookmarks"]["Account"]["replication_key_value"]
    ids = [r["Id"] for r in salesforce.org.rows("Account", include_deleted=False)]
    changed = ids[::7]  # spread over the object, so over several pages
    for k, row_id in enumerate(changed):
        salesforce.org.update("Account", row_id, Name=f"Changed {k}")
    salesforce.faults.add(Fault(kind="request_limit", path="/results", after=1))
    stopped = run_tap(capsys, state=first_state, mapping=NO_COMPOUND, api_type="bulk")
    assert stopped.exit_code == 1
    assert 0 < len(stopped.records["Account"]) < len(changed)  # the first page only
    assert stopped.state["bookmarks"]["Account"]["replication_key_value"] == old
    assert "progress_markers" not in stopped.state["bookmarks"]["Account"]
    resumed = run_tap(capsys, state=stopped.state, mapping=NO_COMPOUND, api_type="bulk")
    # The rows sent before the stop are remembered with their stamps: only the rest comes now.
    # Then the accounts whose parent account changed (Parent.Name), read again for that.
    sent_before = {r["Id"] for r in stopped.records["Account"]}
    again = {r["Id"] for r in resumed.records["Account"]}
    assert again >= set(changed) - sent_before
    assert all(salesforce.org.get("Account", i)["ParentId"] in changed for i in again - set(changed))


def test_windowed_bulk_reads_commit_the_bookmark_per_window(salesforce, capsys):
    everything = account_rows(salesforce)
    # Three jobs fail, so the object is read in windows of an eighth of its history; the third
    # window's results are refused (REQUEST_LIMIT_EXCEEDED): the run stops with two windows' state.
    salesforce.faults.add(Fault(kind="bulk_job_failed", path="/jobs/query", count=3))
    salesforce.faults.add(Fault(kind="request_limit", path="/results", after=2))
    stopped = run_tap(capsys, mapping=NO_COMPOUND, api_type="bulk")
    assert stopped.exit_code == 1
    bookmark = stopped.state["bookmarks"]["Account"]["replication_key_value"]
    sent = {r["Id"]: r["SystemModstamp"] for r in stopped.records["Account"]}
    # Everything before the bookmark was sent, and nothing at or after it.
    assert sent == {i: s for i, s in everything.items() if s < bookmark}
    assert sent and len(sent) < len(everything)
    assert set(stopped.state["bookmarks"]["Account"]["emitted"][0]) <= set(sent)
    windows = [q for q in bulk_queries(salesforce) if "SystemModstamp <" in q]
    assert f"SystemModstamp < {bookmark.replace('+00:00', 'Z')}" in windows[1]  # the 2nd window's end
    resumed = run_tap(capsys, state=stopped.state, mapping=NO_COMPOUND, api_type="bulk")
    assert sorted(r["Id"] for r in resumed.records["Account"]) == sorted(
        i for i, s in everything.items() if s >= bookmark
    )


def test_a_nul_byte_in_bulk_csv_is_data(salesforce, capsys):
    """Salesforce text can hold NUL (airbytehq/airbyte#8300.

    Singer-io/tap-salesforce PR #21 and simple-salesforce strip it because Python 3.10's csv refused it). On
    the Python floor (3.11) the CSV reader takes it as data: the read never fails, and Bulk gives what REST
    gives.
    """
    from tests.mappings import document, group
    from tests.support.tap import run_tap, same_records

    mapping = document(group("Account", "org id", "Id", (("Name", "name"), ("Description", "about"))))
    first = salesforce.org.rows("Account")[0]["Id"]
    salesforce.org.update("Account", first, Name="Acme\x00Corp", Description='a "quoted"\x00\nline')
    bulk = run_tap(capsys, mapping=mapping, api_type="bulk")
    rest = run_tap(capsys, mapping=mapping, api_type="rest")
    assert bulk.exit_code == rest.exit_code == 0
    (row,) = [r for r in bulk.records["Account"] if r["Id"] == first]
    assert (row["Name"], row["Description"]) == ("Acme\x00Corp", 'a "quoted"\x00\nline')
    assert same_records(bulk.records, rest.records)


@pytest.mark.parametrize("api_type", ["rest", "bulk"])
def test_include_deleted_false_reads_live_rows_only(salesforce, capsys, api_type):
    # README: include_deleted (default true) "Query with queryAll and emit soft-deleted rows".
    # Off, the tap queries with `query` (REST /query, a Bulk job with operation "query"), which
    # Salesforce answers without the rows in the Recycle Bin (REST API Developer Guide, "QueryAll").
    org = salesforce.org
    deleted = {r["Id"] for r in org.rows("Account") if r["IsDeleted"]}
    assert deleted  # the emulator's org has soft-deleted accounts
    run = run_tap(capsys, api_type=api_type, include_deleted=False)
    read = by_id(run.records)["Account"]
    assert set(read) == {r["Id"] for r in org.rows("Account", include_deleted=False)}
    assert not set(read) & deleted
    assert not [r for r in salesforce.requests if "queryAll" in r["path"]]
    assert used_bulk(salesforce) == (api_type == "bulk")
