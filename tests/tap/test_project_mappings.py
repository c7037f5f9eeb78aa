"""Issue 17, points 2 and 3.

A project's mappings are checked together, and a job's tap and target read the same mapping.

The README's sharding recipe (one mapping file per shard, as inherited plugins) used to get
around every cross-mapping rule: each file was valid alone, and Accounts ended up with plan
values in their `segment` property. These tests write a Meltano project into a temporary
folder and run the mapping commands in it, as `meltano invoke` does (MELTANO_PROJECT_ROOT and
MELTANO_ENVIRONMENT set, the project root as working directory).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from groups_mapping import load_mapping, problems_together
from tap_salesforce_groups.mapping_cli import main
from tap_salesforce_groups.project import plugin_mappings, project_problems
from tests.mappings import document, group
from tests.support.tap import CONFIG

ACCOUNTS = document(group("Account", "org id", "Id", (("Name", "account name"), ("Industry", "segment"))))
PLANS = document(group("Subscription__c", "org id", "Account__c", (("Plan__c", "segment"),)))

BASE = """
default_environment: dev
environments:
- name: dev
- name: prod
plugins:
  extractors:
  - name: tap-salesforce-groups
    namespace: tap_salesforce_groups
    config:
      mapping_file: mappings/accounts.json
  - name: tap-salesforce-groups-mapping
    inherit_from: tap-salesforce-groups
  - name: tap-salesforce-groups-plans
    inherit_from: tap-salesforce-groups
    config:
      mapping_file: mappings/plans.json
  loaders:
  - name: target-amplitude-groups
    namespace: target_amplitude_groups
    config:
      mapping_file: mappings/accounts.json
  - name: target-amplitude-groups-plans
    inherit_from: target-amplitude-groups
    config:
      mapping_file: mappings/plans.json
jobs:
- name: accounts
  tasks: [tap-salesforce-groups target-amplitude-groups]
- name: plans
  tasks: [tap-salesforce-groups-plans target-amplitude-groups-plans]
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "accounts.json").write_text(json.dumps(ACCOUNTS))
    (tmp_path / "mappings" / "plans.json").write_text(json.dumps(PLANS))
    (tmp_path / "meltano.yml").write_text(BASE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MELTANO_PROJECT_ROOT", str(tmp_path))
    monkeypatch.setenv("MELTANO_ENVIRONMENT", "dev")
    for name in ("TAP_SALESFORCE_GROUPS_MAPPING", "TAP_SALESFORCE_GROUPS_MAPPING_FILE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def run(command: str, project: Path, **settings: Any) -> Any:
    config = {**{k: v for k, v in CONFIG.items() if k != "mapping"}, **settings}
    path = project / "config.json"
    path.write_text(json.dumps(config))
    return CliRunner().invoke(main, [command, "--config", str(path)], catch_exceptions=False)


SEGMENT = (
    "group property 'segment' of group type 'org id' is also written by "
    "mappings/accounts.json: 1: Account -> org id; one would overwrite the other"
)


def test_validate_checks_the_shards_mapping_files_together(project):
    result = run("validate", project, mapping_file="mappings/accounts.json")
    assert result.exit_code == 1
    assert "The project's mappings do not work together (1 problems):" in result.output
    assert (
        "  - tap-salesforce-groups-plans (mappings/plans.json): 1: Subscription__c -> org id: " + SEGMENT
    ) in result.output
    # with the clash gone, both files pass together
    (project / "mappings" / "plans.json").write_text(
        json.dumps(document(group("Subscription__c", "org id", "Account__c", (("Plan__c", "plan"),))))
    )
    assert run("validate", project, mapping_file="mappings/accounts.json").exit_code == 0


def test_project_limits_count_every_file(project):
    # 3 group types in one file, 3 in another: 6 in the Amplitude project
    three = [group("Account", f"type {n}", "Id", ((f"F{n}__c", f"p{n}"),)) for n in range(3)]
    (project / "mappings" / "accounts.json").write_text(json.dumps(document(*three)))
    other = [group("Contact", f"type {n}", "Id", ((f"G{n}__c", f"q{n}"),)) for n in range(3, 6)]
    (project / "mappings" / "plans.json").write_text(json.dumps(document(*other)))
    result = run("validate", project, mapping_file="mappings/accounts.json")
    assert result.exit_code == 1
    assert "use 6 group types" in result.output and "at most 5" in result.output
    # 600 + 401 distinct properties
    many = [group("Account", "org id", "Id", tuple((f"A{n}__c", f"a{n}") for n in range(600)))]
    more = [group("Contact", "contact", "Id", tuple((f"C{n}__c", f"c{n}") for n in range(401)))]
    (project / "mappings" / "accounts.json").write_text(json.dumps(document(*many)))
    (project / "mappings" / "plans.json").write_text(json.dumps(document(*more)))
    result = run("validate", project, mapping_file="mappings/accounts.json")
    assert "define 1001 distinct group properties" in result.output


def test_environments_and_include_paths_are_part_of_the_project(project):
    # The clash exists only in prod, where an environment sets the shard's file, and in a plugin
    # declared in an included file.
    (project / "meltano.yml").write_text(
        BASE.replace("      mapping_file: mappings/plans.json\n", "", 1).replace(
            "- name: prod\n",
            "- name: prod\n  config:\n    plugins:\n      extractors:\n      - name: tap-salesforce-groups-plans\n"
            "        config:\n          mapping_file: mappings/plans.json\n",
        )
    )
    names = {p.plugin: p.mapping_file for p in plugin_mappings(project, "dev")}
    assert "tap-salesforce-groups-plans" in names  # inherits accounts.json in dev
    assert run("validate", project, mapping_file="mappings/accounts.json").exit_code == 1  # the target shard
    (project / "meltano.yml").write_text(
        BASE.replace(
            "  - name: target-amplitude-groups-plans\n    inherit_from: target-amplitude-groups\n"
            "    config:\n      mapping_file: mappings/plans.json\n",
            "",
        ).replace("      mapping_file: mappings/plans.json\n", "", 1)
        + "include_paths: ['./extra/*.meltano.yml']\n"
    )
    assert run("validate", project, mapping_file="mappings/accounts.json").exit_code == 0
    (project / "extra").mkdir()
    (project / "extra" / "plans.meltano.yml").write_text(
        "plugins:\n  loaders:\n  - name: target-amplitude-groups-plans\n    inherit_from: target-amplitude-groups\n"
        "    config:\n      mapping_file: mappings/plans.json\n"
    )
    result = run("validate", project, mapping_file="mappings/accounts.json")
    assert result.exit_code == 1
    assert "target-amplitude-groups-plans (mappings/plans.json)" in result.output


def test_a_shard_repeating_part_of_the_whole_mapping_is_no_clash(project):
    whole = document(
        group("Account", "org id", "Id", (("Name", "account name"), ("Industry", "segment"))),
        group("Subscription__c", "subscription", "Name", (("Plan__c", "plan"),)),
    )
    (project / "mappings" / "plans.json").write_text(json.dumps(whole))
    assert run("validate", project, mapping_file="mappings/accounts.json").exit_code == 0


def test_problems_together_is_the_one_function_for_several_mappings():
    problems = problems_together({"accounts.json": load_mapping(ACCOUNTS), "plans.json": load_mapping(PLANS)})
    assert problems == ["plans.json: 1: Subscription__c -> org id: " + SEGMENT.replace("mappings/", "")]
    assert problems_together({"a": load_mapping(ACCOUNTS), "b": load_mapping(ACCOUNTS)}) == []


def test_outside_a_project_only_the_mapping_itself_is_checked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MELTANO_PROJECT_ROOT", raising=False)
    assert project_problems(load_mapping(PLANS)) == ([], [])


# -- 3. verify: both plugins of a job read the same mapping -----------------------------------------
def test_verify_refuses_a_job_whose_tap_and_target_read_different_mappings(project):
    text = BASE.replace(
        "  - name: target-amplitude-groups\n    namespace: target_amplitude_groups\n    config:\n"
        "      mapping_file: mappings/accounts.json\n",
        "  - name: target-amplitude-groups\n    namespace: target_amplitude_groups\n",
    )
    (project / "meltano.yml").write_text(text)
    result = run("verify", project, mapping_file="mappings/accounts.json")
    assert result.exit_code == 1
    assert (
        "target-amplitude-groups has no mapping, but runs behind tap-salesforce-groups: set its "
        "mapping_file to mappings/accounts.json (both plugins read the same mapping)"
    ) in result.output
    (project / "meltano.yml").write_text(
        BASE.replace(
            "config:\n      mapping_file: mappings/plans.json\njobs",
            "config:\n      mapping_file: x.json\njobs",
        )
    )
    (project / "x.json").write_text(
        json.dumps(document(group("Subscription__c", "org id", "Account__c", (("Plan__c", "plan"),))))
    )
    result = run("verify", project, mapping_file="mappings/accounts.json")
    assert result.exit_code == 1
    assert (
        "tap-salesforce-groups-plans reads (mappings/plans.json) but target-amplitude-groups-plans reads "
        "(x.json): both plugins must read the same mapping"
    ) in result.output
