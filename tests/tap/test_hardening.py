"""Issue 17, tap side: one line instead of a traceback, the API budget, Bulk jobs on a signal.

The tap runs as a real process (``python -m tap_salesforce_groups``) where exit codes and
stderr lines matter, and in-process where the Singer messages do.
"""

from __future__ import annotations

import json

import pytest

from emulators._server import Fault
from tests.tap.conftest import CONFIG, MAPPING
from tests.tap.test_run_safety import run_cli


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
    assert [r for r in salesforce.requests if "/query" in r["path"]] == []


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
