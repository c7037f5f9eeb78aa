"""verify and the editor say what a mapping change does to the groups already in Amplitude (issue 16)."""

from __future__ import annotations

import copy
import json

from click.testing import CliRunner

from tap_salesforce_groups.mapping_cli import main
from tests.support.tap import CONFIG, MAPPING


def changed_mapping() -> dict:
    """MAPPING with Account's group name field changed, one property removed and one added."""
    new = copy.deepcopy(MAPPING)
    account = new["mappings"][0]
    account["group_name_field"] = "Account_Number__c"
    removed = account["properties"].pop(0)
    account["properties"].append({"field": "Industry", "property": "industry"})
    new["mappings"][1]["properties"].append({"field": "ARR__c", "property": "arr"})
    return {"mapping": new, "removed": removed["property"]}


def test_the_editor_s_verify_compares_with_the_saved_mapping(editor):
    change = changed_mapping()
    result = editor.call("POST", "/api/verify", change["mapping"]).json()
    assert result["problems"] == []
    warnings = "\n".join(result["warnings"])
    assert "the groups named by Id stay in Amplitude" in warnings
    assert f"no longer mapped: '{change['removed']}'; Amplitude keeps each group's last value" in warnings
    assert "new properties from Industry: the next run backfills them" in warnings
    # Formula fields are named with why and how often they are refreshed.
    assert "ARR__c: formula or roll-up (calculated)" in warnings
    assert "formula_refresh_hours" in warnings


def test_verify_compares_with_the_mapping_before_the_last_save(tmp_path):
    mapping_file = tmp_path / "mapping.json"
    mapping_file.write_text(json.dumps(changed_mapping()["mapping"]))
    (tmp_path / "mapping.json.bak").write_text(json.dumps(MAPPING))  # what the editor's Save keeps
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({**{k: v for k, v in CONFIG.items() if k != "mapping"}, "mapping_file": str(mapping_file)})
    )
    result = CliRunner().invoke(main, ["verify", "--config", str(config)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "the groups named by Id stay in Amplitude" in result.output
    assert "Amplitude keeps each group's last value" in result.output
