"""Sync cadence: the Meltano schedule that runs the tap, set daily or hourly in meltano.yml."""

from __future__ import annotations

import shutil
from pathlib import Path

from emulators.pipeline import PROJECT_ROOT
from tap_salesforce_groups.editor.schedule import ProjectSchedule


def project_copy(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(PROJECT_ROOT / "meltano.yml", root / "meltano.yml")
    return root


def test_cadence_is_set_in_meltano_yml_keeping_everything_else(editor_factory, tmp_path):
    root = project_copy(tmp_path)
    before = (root / "meltano.yml").read_text()
    editor = editor_factory(project_root=str(root))
    got = editor.call("GET", "/api/schedule").json()
    assert got == {
        "available": True,
        "project": str(root / "meltano.yml"),
        "schedules": ["salesforce-to-amplitude"],
        "cadence": "daily",
        "runs_it": {  # nothing runs a Meltano schedule by itself: the page gives the cron line
            "runner": "cron",
            "text": "Nothing runs this schedule by itself: add this line to the crontab (crontab -e), or use Dagster.",
            "cron": f"0 0 * * * cd {root} && meltano schedule run salesforce-to-amplitude",
        },
    }
    response = editor.call("PUT", "/api/schedule", {"cadence": "hourly"})
    assert response.status_code == 200
    assert response.json()["cadence"] == "hourly"
    assert (
        response.json()["runs_it"]["cron"]
        == f"0 * * * * cd {root} && meltano schedule run salesforce-to-amplitude"
    )
    after = (root / "meltano.yml").read_text()
    # A round trip: only the interval line changes; comments, order and quoting survive.
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert changed == [("  interval: '@daily'", "  interval: '@hourly'")]
    assert editor.call("GET", "/api/schedule").json()["cadence"] == "hourly"
    editor.call("PUT", "/api/schedule", {"cadence": "daily"})
    assert (root / "meltano.yml").read_text() == before


def test_cadence_outside_meltano_or_without_a_schedule(editor_factory, tmp_path, monkeypatch):
    monkeypatch.delenv("MELTANO_PROJECT_ROOT", raising=False)
    editor = editor_factory()
    assert editor.call("GET", "/api/schedule").json()["available"] is False
    refused = editor.call("PUT", "/api/schedule", {"cadence": "hourly"})
    assert refused.status_code == 409
    assert refused.json()["error"].startswith("not running under Meltano (MELTANO_PROJECT_ROOT is not set)")

    root = project_copy(tmp_path)
    text = (root / "meltano.yml").read_text()
    (root / "meltano.yml").write_text(text.split("\nschedules:")[0] + "\n")
    editor = editor_factory(project_root=str(root))
    assert editor.call("GET", "/api/schedule").json()["available"] is False
    refused = editor.call("PUT", "/api/schedule", {"cadence": "hourly"})
    assert refused.status_code == 409
    assert "no schedule runs tap-salesforce-groups" in refused.json()["error"]
    bad = editor.call("PUT", "/api/schedule", {"cadence": "weekly"})
    assert bad.status_code == 400
    assert bad.json()["error"] == "cadence must be one of daily, hourly, not 'weekly'"


def test_a_cron_interval_reads_as_custom(tmp_path):
    root = project_copy(tmp_path)
    path = root / "meltano.yml"
    path.write_text(path.read_text().replace("interval: '@daily'", "interval: '15 * * * *'"))
    assert ProjectSchedule(str(root)).read().cadence == "custom"


def test_under_the_dagster_code_location_the_page_says_dagster_runs_it(editor_factory, tmp_path, monkeypatch):
    root = project_copy(tmp_path)
    monkeypatch.setenv("MELTANO_ENVIRONMENT", "prod")
    editor = editor_factory(project_root=str(root))
    cron = editor.call("GET", "/api/schedule").json()["runs_it"]["cron"]
    assert cron == f"0 0 * * * cd {root} && meltano --environment=prod schedule run salesforce-to-amplitude"
    # The code location is in use once it is in the project and Dagster is installed for it.
    (root / "orchestrate" / "dagster").mkdir(parents=True)
    (root / "orchestrate" / "dagster" / "definitions.py").write_text("")
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "dagster").write_text("")
    runner = editor.call("GET", "/api/schedule").json()["runs_it"]
    assert runner["runner"] == "dagster" and runner["cron"] is None
    assert "dagster dev -m orchestrate.dagster.definitions" in runner["text"]
