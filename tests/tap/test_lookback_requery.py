"""A re-query inside an incremental read keeps the lookback span.

A read starts lookback_seconds before the bookmark, because a transaction stamps
SystemModstamp when it runs and commits later (airbytehq/airbyte#27146). When the first query
times out (QUERY_TIMEOUT: windows) or its cursor expires (INVALID_QUERY_LOCATOR: re-query)
before the read has moved the bookmark, the re-query must start where the read started, not at
the old bookmark: a late commit in between would otherwise be skipped by this run, and by every
later one once the bookmark moves on. Found by the convergence test's late commits with
Salesforce faults (tests/convergence).
"""

from __future__ import annotations

from emulators._server import Fault
from tap_salesforce_groups.streams import parse_datetime
from tap_salesforce_groups.tap import state_shape_problems
from tests.mappings import document, group
from tests.support.tap import run_tap

ACCOUNTS = document(group("Account", "org id", "Id", (("Name", "name"),)))


def ids(salesforce) -> list[str]:
    return [r["Id"] for r in salesforce.org.rows("Account", include_deleted=False)]


def test_a_timeout_on_the_first_query_still_reads_the_lookback_span(salesforce, capsys):
    first = run_tap(capsys, mapping=ACCOUNTS, api_type="rest")
    bookmark = first.state["bookmarks"]["Account"]["replication_key_value"]
    late = ids(salesforce)[5]
    newest = max(r["SystemModstamp"] for r in salesforce.org.rows("Account"))
    assert newest[:19] == bookmark[:19]
    # committed now, stamped two minutes before the newest row read: inside the lookback span
    newest_ms = _ms(newest)
    salesforce.org.update_at(newest_ms - 120_000, "Account", late, Name="Committed late")
    salesforce.faults.add(Fault(kind="query_timeout", count=1))
    second = run_tap(capsys, state=first.state, mapping=ACCOUNTS, api_type="rest")
    assert second.exit_code == 0, second.stopped_reason
    assert [r["Id"] for r in second.records.get("Account", [])] == [late]


def test_an_expired_cursor_before_the_bookmark_moved_still_reads_the_lookback_span(salesforce, capsys):
    # 210 rows changed and sent: the next read's first page (200 rows) holds only rows already
    # sent, which the memory skips without moving the bookmark.
    changed = ids(salesforce)[:210]
    start = salesforce.org.now() - 300_000
    for n, record_id in enumerate(changed):  # one a second, the newest 90 s ago
        salesforce.org.update_at(start + n * 1000, "Account", record_id, Name=f"Changed {record_id}")
    first = run_tap(capsys, mapping=ACCOUNTS, api_type="rest")
    late = ids(salesforce)[250]
    # stamped between the last two rows read: after the first page, before the bookmark
    salesforce.org.update_at(start + 208_500, "Account", late, Name="Committed late")
    salesforce.faults.add(Fault(kind="expire_cursor", count=1))
    second = run_tap(capsys, state=first.state, mapping=ACCOUNTS, api_type="rest")
    assert second.exit_code == 0, second.stopped_reason
    assert [r["Id"] for r in second.records.get("Account", [])] == [late]


def _ms(stamp: str) -> int:
    return int(parse_datetime(stamp).timestamp() * 1000)


def test_the_state_a_run_writes_is_accepted_by_the_next_run_s_state_check(salesforce, capsys):
    """The --state shape check accepts exactly what the stream writes.

    The memory is written wrapped in a list (Meltano replaces a list whole when it merges
    partial states).
    Found by the convergence test: every incremental run through the CLI failed at start.
    """
    first = run_tap(capsys, mapping=ACCOUNTS, api_type="rest")
    assert isinstance(first.state["bookmarks"]["Account"]["emitted"], list)
    assert state_shape_problems(first.state) == []
    broken = {"bookmarks": {"Account": {"emitted": [["not", "pairs"]]}}}
    assert state_shape_problems(broken) == [
        "--state: emitted of Account must map Ids to timestamps, not list"
    ]
