"""Issue 17, point 3: a target left without the mapping refuses this tap's streams.

Without a mapping the target maps any tap's stream to a group type of its own (stream name,
key property, every other field). Behind this tap that made stray group types `Account` and
`Subscription__c` with `SystemModstamp`, `IsDeleted` and `Id` as properties, and Amplitude
allows 5 group types per project. So the tap signs each SCHEMA (its description), and the target
refuses a signed stream unless it has the mapping.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from groups_mapping import is_signed
from tap_salesforce_groups.tap import TapSalesforceGroups
from target_amplitude_groups.errors import StreamMismatch
from tests.support.tap import CONFIG, MAPPING, run_tap
from tests.support.target import run_target


def singer_lines(capsys: pytest.CaptureFixture[str], **config: Any) -> str:
    run = run_tap(capsys, **config)
    messages = [
        m
        for stream, schema in run.schemas.items()
        for m in (schema, *({"type": "RECORD", "stream": stream, "record": r} for r in run.records[stream]))
    ]
    messages.append({"type": "STATE", "value": run.state})
    return "".join(json.dumps(m) + "\n" for m in messages)


def test_the_target_refuses_this_taps_streams_without_the_mapping(salesforce, amplitude, capsys):
    lines = singer_lines(capsys)
    with pytest.raises(
        StreamMismatch, match="comes from tap-salesforce-groups, whose streams need the mapping"
    ):
        run_target({}, lines, capsys)
    assert "Account" not in amplitude.groups() and "org id" not in amplitude.groups()
    run_target({"mapping": MAPPING}, lines, capsys)
    assert set(amplitude.groups()) == {"org id", "subscription"}


def test_the_signature_survives_meltanos_catalog_round_trip(salesforce, capsys):
    catalog = json.loads(json.dumps(TapSalesforceGroups(config=CONFIG).catalog_dict))
    assert all(is_signed(entry["schema"]) for entry in catalog["streams"])
    for entry in catalog["streams"]:
        entry["schema"].pop("description")  # a catalog cached before the signature existed
        entry["metadata"][0]["metadata"]["selected"] = True
    capsys.readouterr()
    TapSalesforceGroups(config=CONFIG, catalog=catalog).sync_all()
    schemas = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"SCHEMA"' in line]
    assert schemas and all(is_signed(m["schema"]) for m in schemas)
