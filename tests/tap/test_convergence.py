"""Convergence over time: what each run leaves behind lets the next one catch every change.

Each test plays one way a real org drifts away from what was sent, against the emulator made to
behave that way (emulators/salesforce, with the public source cited there and here), and fails
on the tap before issue 16.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone

import pytest

from emulators._server import Fault
from emulators.salesforce.bulk import Job
from tap_salesforce_groups.streams import iso_datetime, parse_datetime
from tap_salesforce_groups.tap import TapSalesforceGroups
from tests.mappings import document, group
from tests.support.tap import CONFIG, run_tap

ACCOUNTS = document(group("Account", "org id", "Id", (("Name", "name"), ("Industry", "industry"))))


def live_ids(salesforce, name: str = "Account") -> list[str]:
    return [r["Id"] for r in salesforce.org.rows(name, include_deleted=False)]


def sent(run, stream: str = "Account") -> dict[str, dict]:
    return {r["Id"]: r for r in run.records.get(stream, [])}


# -- 1. Bulk jobs: chunks are not a snapshot; commit never past createdDate less a margin ------
# Bulk API 2.0 splits a query into PK chunks run at different times ("Understanding Bulk API 2.0
# Query"; Bulk API Developer Guide, "PK Chunking": "the remaining results are fetched with extra
# queries"); the same cursor loss was reported in airbytehq/airbyte#21500. The emulator selects a
# job's rows when it is created and renders each chunk when first read.


def test_a_row_changed_between_two_bulk_chunks_is_sent_by_the_next_run(salesforce, capsys):
    salesforce.bulk.pk_chunk_rows = 2
    first = run_tap(capsys, mapping=ACCOUNTS, api_type="bulk")
    updated = live_ids(salesforce)[:6]
    for k, row_id in enumerate(updated):  # rows to read, in several chunks of two
        salesforce.org.update("Account", row_id, Industry="Energy", Name=f"Before {k}")
    changed: dict[str, str] = {}

    def meanwhile(job: Job, chunk: int) -> None:
        table, size = salesforce.org.tables["Account"], job.chunk_rows
        rendered = [table.ids[r] for r in job.rows[chunk * size : (chunk + 1) * size]]
        later = [table.ids[r] for r in job.rows[(chunk + 1) * size :]]
        read_already = next((i for i in rendered if i in updated), None)  # in the chunk just rendered
        not_yet = next((i for i in later if i in updated), None)  # in a chunk rendered later
        if changed or read_already is None or not_yet is None:
            return
        salesforce.org.update("Account", read_already, Name="C changed while the job ran")
        time.sleep(0.01)  # a later stamp
        salesforce.org.update("Account", not_yet, Name="D changed while the job ran")
        changed.update(C=read_already, D=not_yet)

    salesforce.bulk.on_chunk_rendered = meanwhile
    try:
        second = run_tap(capsys, state=first.state, mapping=ACCOUNTS, api_type="bulk")
    finally:
        salesforce.bulk.on_chunk_rendered = None
    assert sent(second)[changed["C"]]["Name"] != "C changed while the job ran"  # the chunk was old
    assert sent(second)[changed["D"]]["Name"] == "D changed while the job ran"
    third = run_tap(capsys, state=second.state, mapping=ACCOUNTS, api_type="bulk")
    assert sent(third)[changed["C"]]["Name"] == "C changed while the job ran"
    assert set(sent(third)) == {changed["C"]}  # D, unchanged since, is not sent again
    assert run_tap(capsys, state=third.state, mapping=ACCOUNTS, api_type="bulk").records == {}


def test_an_open_bulk_window_commits_no_later_than_the_job_s_created_date(salesforce, capsys):
    first = run_tap(capsys, mapping=ACCOUNTS, api_type="bulk")
    row_id = live_ids(salesforce)[0]
    salesforce.org.update("Account", row_id, Name="Now")
    second = run_tap(capsys, state=first.state, mapping=ACCOUNTS, api_type="bulk")
    assert set(sent(second)) == {row_id}
    created = [r for r in salesforce.requests if r["path"].endswith("/jobs/query") and r["method"] == "POST"]
    assert created
    bookmark = parse_datetime(second.state["bookmarks"]["Account"]["replication_key_value"])
    stamp = parse_datetime(iso_datetime(salesforce.org.get("Account", row_id)["SystemModstamp"]))
    assert bookmark <= stamp  # the job was created after the change: the margin keeps it behind
    assert bookmark < datetime.now(timezone.utc) - timedelta(seconds=59)


# -- 1. Closed windows end by the server's clock ------------------------------------------------


def test_windows_end_by_salesforce_s_clock_not_ours(salesforce, capsys):
    # Salesforce's clock is behind ours (by half the time since the generated history ends): a
    # window closed by our clock would end in the server's future and commit past rows it
    # stamps later. The Date header of each answer gives the server's time (RFC 9110 §6.6.1).
    history_end = datetime(2025, 12, 1, tzinfo=timezone.utc)
    behind = (datetime.now(timezone.utc) - history_end) / 2
    salesforce.clock_offset = -behind.total_seconds()
    # Four failed jobs: Bulk windows of a sixteenth of the history, each committed at its end.
    salesforce.faults.add(Fault(kind="bulk_job_failed", path="/jobs/query", count=4))
    first = run_tap(capsys, mapping=ACCOUNTS, api_type="bulk")
    assert len(sent(first)) == len(salesforce.org.rows("Account"))
    bookmark = parse_datetime(first.state["bookmarks"]["Account"]["replication_key_value"])
    server_now = datetime.now(timezone.utc) - behind
    assert bookmark <= server_now
    row_id = live_ids(salesforce)[5]
    salesforce.org.update("Account", row_id, Name="Stamped by the server's clock")
    second = run_tap(capsys, state=first.state, mapping=ACCOUNTS, api_type="bulk")
    assert sent(second)[row_id]["Name"] == "Stamped by the server's clock"


# -- 2. Lookback: late commits, without re-sends ------------------------------------------------


@pytest.mark.parametrize("api_type", ["rest", "bulk"])
def test_a_late_commit_is_read_back_and_nothing_is_sent_twice(salesforce, capsys, api_type):
    # A transaction stamps SystemModstamp when it runs and the row appears when it commits
    # (airbytehq/airbyte#27146; airbyte reads back 600 s, singer-io added lookback_window).
    first = run_tap(capsys, mapping=ACCOUNTS, api_type=api_type)
    ids = live_ids(salesforce)
    salesforce.org.update("Account", ids[1], Name="Committed on time")
    second = run_tap(capsys, state=first.state, mapping=ACCOUNTS, api_type=api_type)
    assert set(sent(second)) == {ids[1]}
    ran_at = salesforce.org.now() - 120_000  # the long transaction started two minutes ago
    salesforce.org.update_at(ran_at, "Account", ids[2], Name="Committed late")
    third = run_tap(capsys, state=second.state, mapping=ACCOUNTS, api_type=api_type)
    assert set(sent(third)) == {ids[2]}  # read back, and ids[1] is not sent again
    assert sent(third)[ids[2]]["Name"] == "Committed late"
    fourth = run_tap(capsys, state=third.state, mapping=ACCOUNTS, api_type=api_type)
    assert fourth.records == {}  # an unchanged org sends nothing


def test_a_row_changed_again_inside_the_lookback_is_sent_again(salesforce, capsys):
    first = run_tap(capsys, mapping=ACCOUNTS, api_type="rest")
    row_id = live_ids(salesforce)[3]
    salesforce.org.update("Account", row_id, Name="One")
    second = run_tap(capsys, state=first.state, mapping=ACCOUNTS, api_type="rest")
    time.sleep(0.01)
    salesforce.org.update("Account", row_id, Name="Two")
    third = run_tap(capsys, state=second.state, mapping=ACCOUNTS, api_type="rest")
    assert sent(third)[row_id]["Name"] == "Two"
    (memory,) = third.state["bookmarks"]["Account"]["emitted"]
    assert memory[row_id] == sent(third)[row_id]["SystemModstamp"]


def test_the_memory_is_bounded_and_says_what_it_dropped(salesforce, capsys, caplog, monkeypatch):
    import tap_salesforce_groups.streams as streams

    monkeypatch.setattr(streams, "MEMORY_LIMIT", 5)
    first = run_tap(capsys, mapping=ACCOUNTS, api_type="rest")
    ids = live_ids(salesforce)[:12]
    for row_id in ids:
        salesforce.org.update("Account", row_id, Name="Burst")
        time.sleep(0.003)  # twelve stamps: only the pairs at the bookmark's are never dropped
    second = run_tap(capsys, state=first.state, mapping=ACCOUNTS, api_type="rest")
    assert set(sent(second)) == set(ids)
    assert len(second.state["bookmarks"]["Account"]["emitted"][0]) == 5
    assert "forgot the oldest 7" in caplog.text
    third = run_tap(capsys, state=second.state, mapping=ACCOUNTS, api_type="rest")
    assert len(sent(third)) <= 7  # at most the forgotten rows come again
    # Rows sharing the bookmark's stamp are all kept, past the bound (as ids_at_bookmark did).
    same = live_ids(salesforce)[20:32]
    at = salesforce.org.now()
    for row_id in same:
        salesforce.org.update_at(at, "Account", row_id, Name="Same stamp")
    fourth = run_tap(capsys, state=third.state, mapping=ACCOUNTS, api_type="rest")
    assert set(same) <= set(fourth.state["bookmarks"]["Account"]["emitted"][0])
    fifth = run_tap(capsys, state=fourth.state, mapping=ACCOUNTS, api_type="rest")
    assert not set(sent(fifth)) & set(same)


# -- 3. Relationship paths: a parent changed, the child's stamp did not -----------------------
# heroku/roadmap#319, stitchdata/docs#195: a parent's change does not restamp its children.


def owned_by(salesforce, name: str, owner: str, column: str = "OwnerId") -> set[str]:
    return {r["Id"] for r in salesforce.org.rows(name) if r[column] == owner}


@pytest.mark.parametrize("api_type", ["rest", "bulk"])
def test_a_renamed_owner_reaches_every_account_it_owns(salesforce, capsys, api_type):
    mapping = document(group("Account", "org id", "Id", (("Name", "name"), ("Owner.Name", "owner"))))
    first = run_tap(capsys, mapping=mapping, api_type=api_type)
    owner = salesforce.org.rows("Account")[0]["OwnerId"]
    salesforce.org.update("User", owner, LastName="Renamed")
    new_name = salesforce.org.get("User", owner)["Name"]
    second = run_tap(capsys, state=first.state, mapping=mapping, api_type=api_type)
    assert set(sent(second)) == owned_by(salesforce, "Account", owner)
    assert {r["Owner.Name"] for r in sent(second).values()} == {new_name}
    assert "Owner" in second.state["bookmarks"]["Account"]["relationships"]
    assert run_tap(capsys, state=second.state, mapping=mapping, api_type=api_type).records == {}
    queries = [
        r["query"] for r in salesforce.requests if r["query"] and "Owner.SystemModstamp >=" in r["query"]
    ]
    assert queries  # one query on the parents' stamp per run


@pytest.mark.parametrize("api_type", ["rest", "bulk"])
def test_a_parent_changed_just_before_a_first_read_is_not_sent_again_by_the_next_run(
    salesforce, capsys, api_type
):
    # A first (full) read carries every parent's value as it is. The next run's relationship pass
    # still looks back from before that read began (late commits: BULK_COMMIT_MARGIN, then
    # lookback_seconds), where it finds this parent's change: the rows of the first read are
    # remembered with the parent stamp they carried, so they are not sent again. An unchanged
    # org sends nothing (found by `make soak SEED=136625403`: a mapping edit added an object).
    mapping = document(group("Account", "org id", "Id", (("Name", "name"), ("Owner.Name", "owner"))))
    owner = salesforce.org.rows("Account")[0]["OwnerId"]
    salesforce.org.update("User", owner, LastName="Renamed before")
    first = run_tap(capsys, mapping=mapping, api_type=api_type)
    assert owned_by(salesforce, "Account", owner) <= set(sent(first))
    assert run_tap(capsys, state=first.state, mapping=mapping, api_type=api_type).records == {}


@pytest.mark.parametrize("api_type", ["rest", "bulk"])
def test_a_polymorphic_parent_changed_just_before_a_first_read_is_not_sent_again(
    salesforce, capsys, api_type
):
    # Through the Name object a row carries no parent stamp: before a first read the tap notes the
    # parents the next run would find changed (committed, hence in that read). One that changes
    # after the read has a new stamp and reaches its rows.
    mapping = document(group("Case", "case", "Id", (("Subject", "subject"), ("Owner.Name", "owner"))))
    queue = next(r["OwnerId"] for r in salesforce.org.rows("Case") if r["OwnerId"].startswith("00G"))
    salesforce.org.update("Group", queue, Name="Renamed before")
    first = run_tap(capsys, mapping=mapping, api_type=api_type)
    assert {
        r["Owner.Name"]
        for r in sent(first, "Case").values()
        if r["Id"] in owned_by(salesforce, "Case", queue)
    } == {"Renamed before"}
    assert run_tap(capsys, state=first.state, mapping=mapping, api_type=api_type).records == {}
    salesforce.org.update("Group", queue, Name="Renamed after")
    third = run_tap(capsys, state=first.state, mapping=mapping, api_type=api_type)
    assert set(sent(third, "Case")) == owned_by(salesforce, "Case", queue)


@pytest.mark.parametrize("api_type", ["rest", "bulk"])
def test_a_renamed_queue_reaches_the_cases_it_owns_through_the_name_object(salesforce, capsys, api_type):
    # Owner on Case is polymorphic (User or queue): SOQL reads it through the Name object, which
    # has no SystemModstamp, so the tap asks each parent type for its changed rows, then their
    # children by OwnerId IN (…) (real-org-facts-2.md, "Parents and formulas").
    mapping = document(group("Case", "case", "Id", (("Subject", "subject"), ("Owner.Name", "owner"))))
    first = run_tap(capsys, mapping=mapping, api_type=api_type)
    queue = next(r["OwnerId"] for r in salesforce.org.rows("Case") if r["OwnerId"].startswith("00G"))
    salesforce.org.update("Group", queue, Name="Renamed queue")
    second = run_tap(capsys, state=first.state, mapping=mapping, api_type=api_type)
    assert set(sent(second, "Case")) == owned_by(salesforce, "Case", queue)
    assert {r["Owner.Name"] for r in sent(second, "Case").values()} == {"Renamed queue"}
    assert run_tap(capsys, state=second.state, mapping=mapping, api_type=api_type).records == {}


def test_a_renamed_account_reaches_the_tasks_about_it(salesforce, capsys):
    mapping = document(group("Task", "task", "Id", (("Subject", "subject"), ("What.Name", "about"))))
    first = run_tap(capsys, mapping=mapping, api_type="rest")
    what = next(
        r["WhatId"] for r in salesforce.org.rows("Task") if r["WhatId"] and r["WhatId"].startswith("001")
    )
    salesforce.org.update("Account", what, Name="Renamed account")
    second = run_tap(capsys, state=first.state, mapping=mapping, api_type="rest")
    assert set(sent(second, "Task")) == owned_by(salesforce, "Task", what, "WhatId")
    assert {r["What.Name"] for r in sent(second, "Task").values()} == {"Renamed account"}


def test_two_hops_each_parent_change_is_followed(salesforce, capsys):
    mapping = document(
        group("Subscription__c", "sub", "Id", (("Plan__c", "plan"), ("Account__r.Owner.Name", "owner")))
    )
    first = run_tap(capsys, mapping=mapping, api_type="rest")
    sub = next(r for r in salesforce.org.rows("Subscription__c") if r["Account__c"])
    owner = salesforce.org.get("Account", sub["Account__c"])["OwnerId"]
    salesforce.org.update("User", owner, FirstName="Twice", LastName="Removed")
    second = run_tap(capsys, state=first.state, mapping=mapping, api_type="rest")
    accounts = owned_by(salesforce, "Account", owner)
    expected = {r["Id"] for r in salesforce.org.rows("Subscription__c") if r["Account__c"] in accounts}
    assert set(sent(second, "Subscription__c")) == expected
    assert {r["Account__r.Owner.Name"] for r in sent(second, "Subscription__c").values()} == {"Twice Removed"}


# -- 4. Formula and roll-up fields: a full read every formula_refresh_hours --------------------


def test_a_formula_following_a_parent_is_refreshed_on_its_cadence(salesforce, capsys, caplog):
    mapping = document(
        group("Subscription__c", "sub", "Name", (("Plan__c", "plan"), ("Account_Rating__c", "rating")))
    )
    first = run_tap(capsys, mapping=mapping, api_type="rest")
    assert "Account_Rating__c: formula or roll-up (calculated)" in caplog.text  # verification says so
    sub = next(r for r in salesforce.org.rows("Subscription__c") if r["Account__c"] and not r["IsDeleted"])
    rating = "Cold" if sub["Account_Rating__c"] != "Cold" else "Hot"
    salesforce.org.update("Account", sub["Account__c"], Rating=rating)
    second = run_tap(capsys, state=first.state, mapping=mapping, api_type="rest")
    assert second.records == {}  # within formula_refresh_hours: no timestamp moved
    state = second.state
    entry = state["bookmarks"]["Subscription__c"]
    read_at = parse_datetime(entry["formulas_read_at"])
    entry["formulas_read_at"] = (read_at - timedelta(hours=22)).isoformat()
    assert run_tap(capsys, state=state, mapping=mapping, api_type="rest").records == {}  # not due yet
    # A daily schedule's next run, starting a little less than 24 h after the last: due. (Due at
    # 24 h exactly, it would wait for the run after, 48 h in all.)
    entry["formulas_read_at"] = (read_at - timedelta(hours=23, minutes=30)).isoformat()
    third = run_tap(capsys, state=state, mapping=mapping, api_type="rest")
    rows = sent(third, "Subscription__c")
    assert len(rows) == len(salesforce.org.rows("Subscription__c"))  # every row, …
    assert set(next(iter(rows.values()))) == {
        "Id",
        "Name",
        "IsDeleted",
        "SystemModstamp",
        "Account_Rating__c",
    }
    assert rows[sub["Id"]]["Account_Rating__c"] == rating  # … with the formula's value of now
    assert parse_datetime(third.state["bookmarks"]["Subscription__c"]["formulas_read_at"]) > parse_datetime(
        entry["formulas_read_at"]
    )
    assert run_tap(capsys, state=third.state, mapping=mapping, api_type="rest").records == {}


# -- 5. Mapping changes ------------------------------------------------------------------------


@pytest.mark.parametrize("api_type", ["rest", "bulk"])
def test_a_new_property_is_backfilled_to_every_group_without_a_flag(salesforce, capsys, api_type):
    before = document(group("Account", "org id", "Id", (("Name", "name"),)))
    after = document(group("Account", "org id", "Id", (("Name", "name"), ("Industry", "industry"))))
    first = run_tap(capsys, mapping=before, api_type=api_type)
    assert set(first.state["bookmarks"]["Account"]["fields"]) == {"Name", "Id", "SystemModstamp", "IsDeleted"}
    second = run_tap(capsys, state=first.state, mapping=after, api_type=api_type)
    rows = sent(second)
    assert len(rows) == len(salesforce.org.rows("Account"))
    assert all(set(r) == {"Id", "SystemModstamp", "IsDeleted", "Industry"} for r in rows.values())
    assert "Industry" in second.state["bookmarks"]["Account"]["fields"]
    assert run_tap(capsys, state=second.state, mapping=after, api_type=api_type).records == {}


def test_a_new_group_name_field_reads_every_row_under_the_new_identity(salesforce, capsys, caplog):
    before = document(group("Account", "org id", "Id", (("Name", "name"),)))
    after = document(group("Account", "org id", "Account_Number__c", (("Name", "name"),)))
    first = run_tap(capsys, mapping=before, api_type="rest")
    second = run_tap(capsys, state=first.state, mapping=after, api_type="rest")
    assert len(sent(second)) == len(salesforce.org.rows("Account"))
    assert "groups 'org id' by Id are no longer mapped; they stay in Amplitude" in caplog.text
    assert run_tap(capsys, state=second.state, mapping=after, api_type="rest").records == {}


# -- 7. Timeouts and concurrency limits ----------------------------------------------------------


def test_a_timeout_on_the_oldest_row_query_reads_in_windows_from_the_first_day(salesforce, capsys, caplog):
    salesforce.faults.add(
        Fault(kind="query_timeout", path="/queryAll", count=2)
    )  # the read, then the oldest row
    run = run_tap(capsys, mapping=ACCOUNTS, api_type="rest")
    assert run.exit_code == 0, run.stopped_reason
    assert len(sent(run)) == len(salesforce.org.rows("Account"))
    assert "reading in windows from 1999-01-01" in caplog.text


def test_a_timeout_on_count_reads_through_bulk(salesforce, capsys, caplog):
    caplog.set_level(logging.INFO)
    first = run_tap(capsys, mapping=ACCOUNTS)
    row_id = live_ids(salesforce)[0]
    salesforce.org.update("Account", row_id, Name="Counted")
    salesforce.faults.add(Fault(kind="query_timeout", path="/queryAll", count=1))  # the COUNT()
    run = run_tap(capsys, state=first.state, mapping=ACCOUNTS)
    assert run.exit_code == 0
    assert set(sent(run)) == {row_id}
    assert "counting the rows timed out; using Bulk API 2.0" in caplog.text


@pytest.mark.parametrize("path", ["/queryAll", "/jobs/query"])
def test_too_many_concurrent_requests_wait_and_retry(salesforce, capsys, caplog, path):
    # REQUEST_LIMIT_EXCEEDED also means "too many long requests at once", which passes
    # (SalesforceLabs/OrgCheck#432; salesforcecli/cli PR #2180 retries it).
    message = "ConcurrentPerOrgLongTxn Limit exceeded."
    salesforce.faults.add(Fault(kind="request_limit", path=path, body=message, count=2))
    run = run_tap(capsys, mapping=ACCOUNTS, api_type="bulk" if "jobs" in path else "rest")
    assert run.exit_code == 0, run.stopped_reason
    assert len(sent(run)) == len(salesforce.org.rows("Account"))
    assert "too many requests at once" in caplog.text


def test_a_failed_bulk_job_that_did_not_time_out_fails_at_once(salesforce, capsys, caplog):
    # airbyte source-salesforce wait_for_job: only timeouts and retry exhaustion are worth retrying.
    reason = "INVALID_FIELD: No such column 'Foo' on entity 'Account'"
    salesforce.faults.add(Fault(kind="bulk_job_failed", path="/jobs/query", body=reason))
    run = run_tap(capsys, mapping=ACCOUNTS, api_type="bulk")
    assert run.exit_code == 1
    assert reason in (run.stopped_reason or "")
    created = [r for r in salesforce.requests if r["path"].endswith("/jobs/query") and r["method"] == "POST"]
    assert len(created) == 1  # no halving


def test_an_unchanged_incremental_run_describes_nothing_and_asks_once_per_relationship(salesforce, capsys):
    # What an unchanged run costs in Salesforce calls (docs/SPEC.md §8 reports it): the main
    # query and one query per relationship hop, no describe (what it said is kept in STATE).
    mapping = document(
        group(
            "Account", "org id", "Id", (("Name", "name"), ("Owner.Name", "owner"), ("Parent.Name", "parent"))
        )
    )
    first = run_tap(capsys, mapping=mapping, api_type="rest")
    assert first.state["bookmarks"]["Account"]["described"]["relationships"]
    catalog = TapSalesforceGroups(config={**CONFIG, "mapping": mapping}).catalog_dict
    salesforce.clear_requests()
    again = run_tap(capsys, state=first.state, mapping=mapping, api_type="rest", catalog=catalog)
    assert again.records == {}
    assert [r for r in salesforce.requests if "describe" in r["path"]] == []
    queries = [r["query"] for r in salesforce.requests if r["query"]]
    assert len(queries) == 3
    assert sum("Owner.SystemModstamp >=" in q for q in queries) == 1
    assert sum("Parent.SystemModstamp >=" in q for q in queries) == 1


def test_a_timeout_on_the_changed_parents_query_reads_them_in_windows(salesforce, capsys, caplog):
    mapping = document(group("Case", "case", "Id", (("Subject", "subject"), ("Owner.Name", "owner"))))
    first = run_tap(capsys, mapping=mapping, api_type="rest")
    queue = next(r["OwnerId"] for r in salesforce.org.rows("Case") if r["OwnerId"].startswith("00G"))
    salesforce.org.update("Group", queue, Name="Renamed in a window")
    salesforce.faults.add(Fault(kind="query_timeout", path="/query/", count=2))  # each parent type once
    second = run_tap(capsys, state=first.state, mapping=mapping, api_type="rest")
    assert second.exit_code == 0, second.stopped_reason
    assert "reading in windows of" in caplog.text
    assert {r["Owner.Name"] for r in sent(second, "Case").values()} == {"Renamed in a window"}


def test_meltano_s_merge_of_partial_states_keeps_the_memory_bounded(salesforce, capsys):
    # With --full-refresh (or --state-strategy merge) Meltano merges each STATE into the one
    # before, key by key (meltano.core.utils.merge): a dict of pairs would grow into the union of
    # every STATE of the run. The memory is a list (replaced whole), and no key is ever removed.
    from meltano.core.utils import merge

    first = run_tap(capsys, mapping=ACCOUNTS, api_type="rest")
    ids = live_ids(salesforce)
    salesforce.org.update("Account", ids[0], Name="Changed")
    second = run_tap(capsys, state=first.state, mapping=ACCOUNTS, api_type="rest")
    merged = merge(json.loads(json.dumps(second.state)), json.loads(json.dumps(first.state)))
    assert merged["bookmarks"]["Account"]["emitted"] == second.state["bookmarks"]["Account"]["emitted"]
    assert merged == second.state


def test_through_bulk_an_unchanged_parent_costs_one_count_not_a_job(salesforce, capsys):
    mapping = document(group("Account", "org id", "Id", (("Name", "name"), ("Owner.Name", "owner"))))
    first = run_tap(capsys, mapping=mapping, api_type="bulk")
    salesforce.clear_requests()
    again = run_tap(capsys, state=first.state, mapping=mapping, api_type="bulk")
    assert again.records == {}
    jobs = [
        r["query"] for r in salesforce.requests if r["path"].endswith("/jobs/query") and r["method"] == "POST"
    ]
    assert len(jobs) == 1 and "Owner.SystemModstamp" not in jobs[0]  # the main read only
    counts = [r["query"] for r in salesforce.requests if r["query"] and "COUNT()" in r["query"]]
    assert counts == [c for c in counts if "Owner.SystemModstamp >=" in c] and len(counts) == 1
