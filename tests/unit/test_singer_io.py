"""The msgspec-based Singer reader and writer read and write what the SDK's defaults do."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import pytest
from singer_sdk.singerlib.encoding.simple import RecordMessage
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.singerlib.json import deserialize_json, serialize_json

from tap_salesforce_groups.writer import FastSingerWriter
from target_amplitude_groups.reader import FastSingerReader

LINES = [
    '{"type":"RECORD","stream":"Account","record":{"Id":"1","n":12345678901234567890123,'
    '"x":1.10,"big":1e21,"t":"é 😀 e\\u0301","b":true,"z":null}}',
    '{"type": "STATE", "value": {"bookmarks": {"Account": {"replication_key_value": "2025-01-01"}}}}',
]


@pytest.mark.parametrize("line", LINES)
def test_the_reader_decodes_as_the_sdk_default_does(line: str) -> None:
    got = FastSingerReader().deserialize_json(line)
    assert got == deserialize_json(line)
    assert repr(got) == repr(deserialize_json(line))  # decimals stay decimals, digits and all


def test_a_lone_surrogate_reaches_the_target_instead_of_failing_the_line() -> None:
    line = '{"type":"RECORD","stream":"t","record":{"a":"lone \\ud800 surrogate"}}'
    assert FastSingerReader().deserialize_json(line)["record"]["a"] == "lone \ud800 surrogate"


def test_a_line_that_is_not_json_is_refused_as_the_sdk_refuses_it() -> None:
    with pytest.raises(InvalidInputLine, match="Unable to parse line as JSON"):
        FastSingerReader().deserialize_json('{"type": "RECORD", ')


def _record(**values: object) -> RecordMessage:
    return RecordMessage(
        stream="Account",
        record=dict(values),
        time_extracted=dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
    )


def test_the_writer_writes_one_json_line_with_the_same_content() -> None:
    message = _record(Id="1", n=2**70, x=1.5, t="é 😀", b=False, z=None)
    line = bytes(FastSingerWriter().serialize_message(message))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    got = json.loads(line, parse_float=decimal.Decimal)
    sdk = json.loads(serialize_json(message.to_dict()), parse_float=decimal.Decimal)  # the default writer's
    # msgspec writes the time as "…Z", the default writer as "…+00:00": the same instant.
    stamps = [dt.datetime.fromisoformat(m.pop("time_extracted").replace("Z", "+00:00")) for m in (got, sdk)]
    assert stamps[0] == stamps[1]
    assert got == sdk


def test_a_lone_surrogate_is_written_escaped_instead_of_failing_the_tap() -> None:
    line = bytes(FastSingerWriter().serialize_message(_record(a="lone \ud800 surrogate")))
    assert b"\\ud800" in line
    assert json.loads(line)["record"]["a"] == "lone \ud800 surrogate"
