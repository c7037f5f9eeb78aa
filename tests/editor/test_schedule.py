"""Sync cadence: the Meltano schedule that runs the tap, set daily or hourly in meltano.yml."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from emulators.pipeline import PROJECT_ROOT
from tap_salesforce_groups.editor.schedule import ProjectSchedule
from tests.support.tap import MAPPING


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


SHARDS = """\
plugins:
  extractors:
  - name: tap-salesforce-groups--eu
    inherit_from: tap-salesforce-groups
  - name: tap-salesforce-groups--eu-subscriptions
    inherit_from: tap-salesforce-groups--eu
  - name: tap-other
jobs:
- name: eu
  tasks:
  - tap-salesforce-groups--eu-subscriptions target-amplitude-groups
- name: other
  tasks: [tap-other target-amplitude-groups]
schedules:
- name: eu-nightly  # the EU shard
  interval: '@daily'
  job: eu
- name: other-nightly
  interval: '@daily'
  job: other
"""


def test_schedules_of_inherited_plugins_and_included_files_are_the_tap_s(editor_factory, tmp_path):
    # Meltano reads `include_paths` files as part of meltano.yml and writes a schedule back to the
    # file that holds it; an `inherit_from` plugin runs this tap with its own config (sharding).
    # https://docs.meltano.com/concepts/project#multiple-yaml-files
    # https://docs.meltano.com/guide/plugin-management#plugin-inheritance
    root = project_copy(tmp_path)
    main = root / "meltano.yml"
    main.write_text(
        main.read_text().replace(
            "environments:", "include_paths:\n- ./shards/*.meltano.yml\n\nenvironments:", 1
        )
    )
    (root / "shards").mkdir()
    shard = root / "shards" / "eu.meltano.yml"
    shard.write_text(SHARDS)
    editor = editor_factory(project_root=str(root))
    got = editor.call("GET", "/api/schedule").json()
    assert got["schedules"] == ["salesforce-to-amplitude", "eu-nightly"]  # not other-nightly
    assert got["cadence"] == "daily"
    main_before, shard_before = main.read_text(), shard.read_text()
    assert editor.call("PUT", "/api/schedule", {"cadence": "hourly"}).json()["cadence"] == "hourly"
    assert main.read_text() == main_before.replace("interval: '@daily'", "interval: '@hourly'")
    assert shard.read_text() == shard_before.replace(
        "# the EU shard\n  interval: '@daily'", "# the EU shard\n  interval: '@hourly'"
    )  # other-nightly runs another tap: untouched
    # Only the shard's schedule set apart: the control shows the mix as custom.
    shard.write_text(shard_before)
    assert editor.call("GET", "/api/schedule").json()["cadence"] == "custom"


def test_cadence_keeps_crlf_line_endings(editor_factory, tmp_path):
    root = project_copy(tmp_path)
    path = root / "meltano.yml"
    crlf = path.read_bytes().replace(b"\n", b"\r\n")
    path.write_bytes(crlf)
    editor = editor_factory(project_root=str(root))
    assert editor.call("PUT", "/api/schedule", {"cadence": "hourly"}).status_code == 200
    assert path.read_bytes() == crlf.replace(b"interval: '@daily'", b"interval: '@hourly'")


def test_cadence_writes_through_a_symlinked_meltano_yml(editor_factory, tmp_path):
    root = project_copy(tmp_path)
    shared = tmp_path / "shared-config"
    shared.mkdir()
    (root / "meltano.yml").rename(shared / "meltano.yml")
    (root / "meltano.yml").symlink_to(shared / "meltano.yml")
    editor = editor_factory(project_root=str(root))
    assert editor.call("PUT", "/api/schedule", {"cadence": "hourly"}).status_code == 200
    assert (root / "meltano.yml").is_symlink()
    assert "interval: '@hourly'" in (shared / "meltano.yml").read_text()
    assert sorted(p.name for p in shared.iterdir()) == ["meltano.yml"]  # no temporary file left


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_a_new_mapping_file_gets_the_umask_s_mode(editor_factory, umask, mode):
    # Another service user (the one cron or an orchestrator runs the tap as) must be able to read
    # it; mkstemp's 0600 would lock it out.
    editor = editor_factory(file_mapping=None)
    old = os.umask(umask)
    try:
        created = editor.call("PUT", "/api/mapping", MAPPING, headers={"If-None-Match": "*"})
    finally:
        os.umask(old)
    assert created.status_code == 200
    assert stat.S_IMODE(editor.mapping_file.stat().st_mode) == mode


def test_the_mapping_is_saved_through_a_symlink_keeping_its_mode(editor_factory, tmp_path):
    editor = editor_factory()
    real = tmp_path / "config" / "mapping.json"
    real.parent.mkdir()
    editor.mapping_file.rename(real)
    real.chmod(0o640)
    editor.mapping_file.symlink_to(real)
    tag = editor.call("GET", "/api/mapping").headers["ETag"]
    assert editor.call("PUT", "/api/mapping", MAPPING, headers={"If-Match": tag}).status_code == 200
    assert editor.mapping_file.is_symlink()
    assert json.loads(real.read_text()) == MAPPING
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
