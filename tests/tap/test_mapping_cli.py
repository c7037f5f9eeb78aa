"""tap-salesforce-groups-mapping: validate, export and scaffold, against the Salesforce emulator."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tap_salesforce_groups.mapping_cli import main
from tests.support.tap import CONFIG, MAPPING


@pytest.fixture
def config_file(tmp_path):
    def write(**overrides):
        path = tmp_path / "config.json"
        path.write_text(json.dumps({**CONFIG, **overrides}))
        return str(path)

    return write


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_validate_and_export(config_file):
    result = invoke("validate", "--config", config_file())
    assert result.exit_code == 0
    assert result.output == "Mapping OK: 2 mappings, 12 group properties.\n"
    exported = invoke("export", "--config", config_file())
    assert json.loads(exported.output) == MAPPING


def test_validate_lists_every_problem(config_file):
    bad = {
        "version": 1,
        "mappings": [{"object": "", "group_type": "", "group_name_field": "Id", "properties": []}],
    }
    result = invoke("validate", "--config", config_file(mapping=bad))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "mapping setting is invalid (3 problems):",
        "  - 1: Unknown -> Unknown: group mapping is missing Salesforce object",
        "  - 1: Unknown -> Unknown: group mapping is missing group type",
        "  - 1: Unknown -> Unknown: group mapping has no group properties",
    ]


def test_scaffold_uses_field_labels_and_checks_the_org(salesforce, config_file):
    result = invoke(
        "scaffold",
        "--config",
        config_file(),
        "--object",
        "Account",
        "--group-type",
        "account",
        "--name-field",
        "Account_Number__c",
        "--fields",
        "Industry, Owner.Name,Website",
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["mappings"][:2] == MAPPING["mappings"]
    labels = {f["name"]: f["label"] for f in salesforce.org.describe("Account")["fields"]}
    user_name = next(f["label"] for f in salesforce.org.describe("User")["fields"] if f["name"] == "Name")
    assert document["mappings"][2] == {
        "object": "Account",
        "group_type": "account",
        "group_name_field": "Account_Number__c",
        "properties": [
            {"field": "Industry", "property": labels["Industry"]},
            {"field": "Owner.Name", "property": f"Owner {user_name}"},
            {"field": "Website", "property": labels["Website"]},
        ],
    }


def test_scaffold_all_fields_and_write(salesforce, config_file, tmp_path):
    mapping_file = tmp_path / "mapping.json"
    config = config_file(mapping=None, mapping_file=str(mapping_file))
    mapping_file.write_text(json.dumps({"version": 1, "mappings": [MAPPING["mappings"][1]]}))
    result = invoke(
        "scaffold", "--config", config, "--object", "Account", "--group-type", "org", "--all", "--write"
    )
    assert result.exit_code == 0, result.output
    written = json.loads(mapping_file.read_text())
    fields = [p["field"] for p in written["mappings"][1]["properties"]]
    assert "Name" in fields and "SystemModstamp" not in fields and "Id" not in fields
    assert invoke("validate", "--config", config).exit_code == 0


def test_scaffold_reports_unknown_fields_and_clashes(config_file):
    result = invoke(
        "scaffold",
        "--config",
        config_file(),
        "--object",
        "Account",
        "--group-type",
        "x",
        "--fields",
        "Nmae,Owner.Nope",
    )
    assert result.exit_code == 1
    assert "  - Account: no field 'Nmae' on Account" in result.output
    assert "  - Account: no field 'Nope' on User (in 'Owner.Nope')" in result.output
    clash = invoke(
        "scaffold",
        "--config",
        config_file(),
        "--object",
        "Account",
        "--group-type",
        "org id",
        "--fields",
        "Name",
    )
    assert clash.exit_code == 1
    assert "is already mapped to group type 'org id'" in clash.output


def test_the_tap_itself_exits_1_with_every_mapping_problem(config_file, salesforce):
    import subprocess
    import sys
    from pathlib import Path

    bad = {
        "version": 1,
        "mappings": [
            {
                "object": "Account",
                "group_type": "",
                "group_name_field": "Id",
                "properties": [{"field": "Name", "property": "$name"}],
            }
        ],
    }
    tap = Path(sys.executable).with_name("tap-salesforce-groups")
    result = subprocess.run(
        [str(tap), "--config", config_file(mapping=bad)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "1: Account -> Unknown: group mapping is missing group type" in result.stderr
    assert "group property name '$name' must not start with '$'" in result.stderr
    assert result.stdout == ""
    assert salesforce.requests == []


def test_scaffold_expands_compound_fields_into_their_components(salesforce, config_file):
    """Issue 7.7: a compound address is never a property; --all and --fields list its components."""
    config = config_file()
    everything = invoke("scaffold", "--config", config, "--object", "Account", "--group-type", "o2", "--all")
    assert everything.exit_code == 0, everything.output
    fields = [p["field"] for p in json.loads(everything.output)["mappings"][-1]["properties"]]
    assert "BillingAddress" not in fields
    assert {"BillingStreet", "BillingCity", "BillingPostalCode"} <= set(fields)
    named = invoke(
        "scaffold",
        "--config",
        config,
        "--object",
        "Account",
        "--group-type",
        "o3",
        "--fields",
        "billingaddress",
    )
    assert named.exit_code == 0, named.output
    fields = [p["field"] for p in json.loads(named.output)["mappings"][-1]["properties"]]
    assert fields[:2] == ["BillingStreet", "BillingCity"]


def test_mapping_commands_build_no_tap(salesforce, config_file, tmp_path):
    """A Tap's construction claims SIGINT/SIGTERM and stdout; the mapping commands use the core."""
    import signal
    import sys

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stdout = sys.stdout
    mapping_file = tmp_path / "mapping.json"
    config = config_file(mapping=None, mapping_file=str(mapping_file))
    assert (
        invoke(
            "scaffold",
            "--config",
            config,
            "--object",
            "Account",
            "--group-type",
            "o",
            "--fields",
            "Name",
            "--write",
        ).exit_code
        == 0
    )
    for command in ("validate", "export", "verify"):
        assert invoke(command, "--config", config).exit_code == 0
    assert {s: signal.getsignal(s) for s in before} == before  # restored after each command
    assert sys.stdout is stdout


def test_the_package_builds_a_tap_only_in_the_singer_entry_point():
    """Issue 15's check: `grep -rn "TapSalesforceGroups(" tap_salesforce_groups` finds only the class."""
    from pathlib import Path

    import tap_salesforce_groups

    package = Path(tap_salesforce_groups.__file__).parent
    found = [
        f"{path.relative_to(package)}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if "TapSalesforceGroups(" in line
    ]
    assert found == ["tap.py: class TapSalesforceGroups(Tap):"]


def test_settings_from_the_environment_are_typed_as_the_sdk_types_them(monkeypatch):
    from tap_salesforce_groups import settings
    from tap_salesforce_groups.tap import TapSalesforceGroups

    values = {
        "CLIENT_ID": "id",
        "MAX_RETRIES": "7",
        "INCLUDE_DELETED": "false",
        "MAPPING": json.dumps(MAPPING),
        "START_DATE": "2024-01-01T00:00:00Z",
    }
    for name, value in values.items():
        monkeypatch.setenv(f"TAP_SALESFORCE_GROUPS_{name}", value)
    ours = settings.resolve(environment=True)
    # The SDK's own parsing, read back from a Tap built without validation (tests may build one).
    sdk = dict(
        TapSalesforceGroups(
            config={}, parse_env_config=True, validate_config=False, setup_mapper=False
        ).config
    )
    assert {k: ours[k] for k in sdk} == sdk
    assert ours["max_retries"] == 7 and ours["include_deleted"] is False
    assert ours["api_type"] == "auto"  # the defaults, from config_jsonschema
    monkeypatch.setenv("TAP_SALESFORCE_GROUPS_MAPPING", "")
    with pytest.raises(ValueError, match="TAP_SALESFORCE_GROUPS_MAPPING"):
        settings.resolve(environment=True)
