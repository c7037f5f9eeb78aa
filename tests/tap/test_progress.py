"""The tap's progress lines: rows read of the COUNT() total, rate, time left; off stdout."""

from __future__ import annotations

import json
import logging
from collections.abc import Generator
from typing import cast

from emulators._server import Fault
from tap_salesforce_groups import progress
from tap_salesforce_groups.progress import Progress
from tests.support.tap import run_tap


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def line_after(read: int, seconds: float, total: int | None) -> str:
    """The progress line once ``read`` rows came in ``seconds`` (a manual clock, no timer line)."""
    clock = Clock()
    p = Progress(logging.getLogger("t"), "Account", clock=clock, interval=3600)
    p.total = total
    rows = cast("Generator[int, None, None]", p.track(range(read)))  # a generator: it can be closed
    for _ in range(read):
        next(rows)
    clock.now += seconds
    line = p.line()
    rows.close()
    return line


def test_line_reports_count_rate_and_time_left():
    assert (
        line_after(50_000, 10, 200_000)
        == "Account: 50000/200000 rows read (25%), 5000 rows/s, about 30s left"
    )


def test_line_without_a_count_has_no_estimate():
    assert line_after(10, 2, None) == "Account: 10 rows read, 5 rows/s"


def test_rows_to_read_line_names_rows_already_delivered(caplog):
    caplog.set_level(logging.INFO)
    assert Progress(logging.getLogger("t"), "Account", delivered=17).expect(17, bulk_from=100000) is False
    assert Progress(logging.getLogger("t"), "Account").expect(100000, bulk_from=100000) is True
    assert caplog.messages == [
        "Account: 17 rows to read, 17 of them already delivered by the last run and skipped; "
        "through REST (Bulk API 2.0 from bulk_threshold 100000)",
        "Account: 100000 rows to read through Bulk API 2.0 (bulk_threshold 100000)",
    ]


def test_tap_logs_progress_while_reading_and_at_the_end(salesforce, capsys, caplog, monkeypatch):
    """A slow second page (the emulator delays it) so the timer fires mid-object."""
    monkeypatch.setattr(progress, "DEFAULT_INTERVAL", 0.1)
    salesforce.faults.add(Fault(path="/query/", delay=0.5))  # nextRecordsUrl pages
    caplog.set_level(logging.INFO)
    run = run_tap(
        capsys,
        mapping={
            "mappings": [
                {
                    "object": "Account",
                    "group_type": "org id",
                    "group_name_field": "Id",
                    "properties": [{"field": "Name"}],
                }
            ]
        },
    )
    total = len(salesforce.org.rows("Account", include_deleted=True))
    assert len(run.records["Account"]) == total
    lines = [m for m in caplog.messages if m.startswith("Account: ")]
    # The line names the API the rows are then read with (REST here: below bulk_threshold).
    assert lines[0] == f"Account: {total} rows to read through REST (Bulk API 2.0 from bulk_threshold 100000)"
    assert any(m.startswith("Querying Account (REST): ") for m in caplog.messages), caplog.messages
    ticks = [m for m in lines if "rows/s" in m and "left" in m]
    assert ticks, lines  # at least one line while the object was being read
    assert all(f"/{total} rows read (" in m for m in ticks)
    assert any(m.startswith(f"Account: 200/{total} rows read (66%), ") for m in ticks), ticks
    assert lines[-1].startswith(f"Account: finished, {total} rows read in ")
    # Progress goes to the log; stdout stays pure Singer messages.
    out = capsys.readouterr().out
    assert all(json.loads(line)["type"] for line in out.splitlines())


def test_a_retry_is_logged_once(salesforce, capsys, caplog):
    """Backoff's own "Backing off <lambda>(...)" line would repeat the tap's retry line."""
    salesforce.faults.add(Fault(path="/queryAll", status=503))
    caplog.set_level(logging.INFO)
    run_tap(capsys, max_retries=2)
    retries = [m for m in caplog.messages if "retry" in m.lower() or "backing off" in m.lower()]
    assert len(retries) == 1, retries
    assert retries[0].startswith("Salesforce answered HTTP 503 to GET ")
