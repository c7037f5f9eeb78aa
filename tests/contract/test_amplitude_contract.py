"""The target against Amplitude's documented /groupidentify answers, replayed over HTTPS.

Each fixture in fixtures/amplitude/responses.json is a response shape Amplitude documents
(fixtures/amplitude/SOURCES.md names the source of each); the emulator only carries it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators._server import Fault
from emulators.amplitude import AmplitudeEmulator
from target_amplitude_groups.errors import AmplitudeError, InvalidApiKey
from tests.mappings import document, group
from tests.support.emulators import AMPLITUDE
from tests.support.target import run_target, singer

RESPONSES: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parent / "fixtures" / "amplitude" / "responses.json").read_text()
)
MAPPING = document(group("Account", "org id", "Id", (("Name", "name"),)))
SCHEMA = {
    "type": "SCHEMA",
    "stream": "Account",
    "schema": {"type": "object", "properties": {"Id": {"type": "string"}, "Name": {"type": "string"}}},
    "key_properties": ["Id"],
}
STATE = {"type": "STATE", "value": {"bookmarks": {"Account": {"replication_key_value": "2025-01-01"}}}}


def records(n: int) -> list[dict[str, Any]]:
    return [
        {"type": "RECORD", "stream": "Account", "record": {"Id": f"a{i}", "Name": f"n{i}"}} for i in range(n)
    ]


def replay(name: str, count: int = 1) -> Fault:
    response = RESPONSES[name]
    return Fault(status=response["status"], body=response["body"], count=count, path="/groupidentify")


@pytest.fixture
def amplitude() -> Iterator[AmplitudeEmulator]:
    AMPLITUDE.reset()
    yield AMPLITUDE
    AMPLITUDE.reset()


@pytest.mark.parametrize("name", ["success", "http_v2_success_summary"])
def test_documented_success_answers_acknowledge(amplitude, capsys, tmp_path, name):
    amplitude.faults.add(replay(name))
    report = tmp_path / "report.json"
    out = run_target(
        {"mapping": MAPPING, "report_file": str(report)}, singer(SCHEMA, *records(2), STATE), capsys
    )
    assert out == [STATE["value"]]
    saved = json.loads(report.read_text())
    assert (saved["groups_sent"], saved["requests"], saved["retries"]) == (2, 1, 0)


def test_a_documented_bad_request_isolates_the_group(amplitude, capsys, tmp_path):
    amplitude.faults.add(replay("bad_request"))
    rejected = tmp_path / "rejected.jsonl"
    out = run_target(
        {"mapping": MAPPING, "rejected_file": str(rejected)}, singer(SCHEMA, *records(1), STATE), capsys
    )
    assert out == [STATE["value"]]
    (line,) = [json.loads(x) for x in rejected.read_text().splitlines()]
    assert (line["status"], line["reason"]) == (400, RESPONSES["bad_request"]["body"])


@pytest.mark.parametrize("name", ["invalid_api_key_http_v2", "invalid_api_key_groupidentify"])
def test_documented_invalid_key_answers_fail_at_once(amplitude, capsys, name):
    amplitude.faults.add(replay(name, count=100))
    with pytest.raises(InvalidApiKey):
        run_target({"mapping": MAPPING}, singer(SCHEMA, *records(4), STATE), capsys)
    assert len(amplitude.requests) == 1


def test_the_documented_413_splits_the_request(amplitude, capsys):
    amplitude.faults.add(replay("payload_too_large"))
    out = run_target({"mapping": MAPPING}, singer(SCHEMA, *records(4), STATE), capsys)
    assert out == [STATE["value"]]
    assert sorted(r["identifications"] for r in amplitude.requests if r["status"] == 200) == [2, 2]


@pytest.mark.parametrize(
    ("name", "logged"),
    [
        ("too_many_requests", "Amplitude HTTP 429; retrying"),
        ("throttled_in_a_2xx", "Amplitude HTTP 200 with code 429; retrying"),
        ("server_error", "Amplitude HTTP 500; retrying"),
        ("bad_gateway", "Amplitude HTTP 502; retrying"),
        ("unavailable", "Amplitude HTTP 503; retrying"),
        ("gateway_timeout", "Amplitude HTTP 504; retrying"),
    ],
)
def test_documented_transient_answers_are_retried(amplitude, capsys, caplog, tmp_path, name, logged):
    amplitude.faults.add(replay(name))
    report = tmp_path / "report.json"
    out = run_target(
        {"mapping": MAPPING, "report_file": str(report)}, singer(SCHEMA, *records(2), STATE), capsys
    )
    assert out == [STATE["value"]]
    saved = json.loads(report.read_text())
    assert saved["retries"] >= 1 and saved["groups_sent"] == 2
    assert logged in caplog.text  # classified as throttling or as a server error, as documented
    assert sorted(amplitude.groups()["org id"]) == ["a0", "a1"]


@pytest.mark.parametrize(
    ("status", "body"), [(202, "success"), (201, {"code": 200, "events_ingested": 2}), (204, "")]
)
def test_a_2xx_amplitude_does_not_document_is_not_an_acknowledgement(amplitude, capsys, status, body):
    # Amplitude documents HTTP 200 as its only success status (SOURCES.md: "success", and the HTTP
    # V2 summary): any other 2xx came from something else (a proxy, a wrong api_url), so the run
    # fails at once and its STATE stays where it was.
    amplitude.faults.add(Fault(status=status, body=body, count=100, path="/groupidentify"))
    with pytest.raises(AmplitudeError, match=f"answered HTTP {status} without Amplitude's success answer"):
        run_target({"mapping": MAPPING}, singer(SCHEMA, *records(2), STATE), capsys)
    assert '"STATE"' not in capsys.readouterr().out
    assert len(amplitude.requests) == 1  # not retried: it is not a transient answer
