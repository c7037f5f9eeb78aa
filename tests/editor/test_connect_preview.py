"""The editor's connection line, its Connect to Salesforce flow, and Preview (docs/SPEC.md §8b).

Connect runs the command line's OAuth flow through the editor's own server (the browser's part
played with ``requests``, as in tests/tap/test_connect.py). Preview is checked against what the
real target sends to the Amplitude emulator for the same rows.
"""

from __future__ import annotations

import io
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from emulators.salesforce import CLIENT_SECRET
from tap_salesforce_groups.connect import ENV_NAME
from tap_salesforce_groups.tap import TapSalesforceGroups
from target_amplitude_groups.target import TargetAmplitudeGroups
from tests.support.emulators import AMPLITUDE, SALESFORCE
from tests.support.tap import CONFIG, MAPPING
from tests.support.target import BASE_CONFIG
from tests.tap.test_connect import browser_login

LINE = "Connected to 127.0.0.1 as integration@emulator.example (integration@emulator.example)"


@pytest.fixture
def salesforce():
    SALESFORCE.reset()
    yield SALESFORCE
    SALESFORCE.reset()


def test_connection_line_names_the_user(salesforce, editor):
    got = editor.call("GET", "/api/connection").json()
    assert got["connected"] is True
    assert got["line"] == LINE
    assert got["callback_url"] == f"http://localhost:{editor.server.server_address[1]}/oauth/callback"


def test_connect_through_the_editor(salesforce, disconnected):
    editor, env_file = disconnected
    status = editor.call("GET", "/api/connection").json()
    assert status["connected"] is False and "no complete Salesforce credentials" in status["problem"]
    refused = editor.call("GET", "/api/objects")
    assert refused.status_code == 409 and refused.json()["connect"] is True
    # Same guards as every API: the token is needed to start a flow.
    assert requests.post(editor.base + "/api/connect", timeout=30).status_code == 403
    start = editor.call("POST", "/api/connect").json()
    port = editor.server.server_address[1]
    assert start["callback_url"] == f"http://localhost:{port}/oauth/callback"
    # A forged callback (wrong state) is refused; the flow goes on.
    forged = requests.get(f"http://localhost:{port}/oauth/callback?code=x&state=forged", timeout=30)
    assert forged.status_code == 400
    # A callback on another Host (DNS rebinding) is refused like every other request.
    other = requests.get(
        f"http://127.0.0.1:{port}/oauth/callback?code=x&state=y", headers={"Host": "evil.example"}, timeout=30
    )
    assert other.status_code == 403
    page = browser_login(start["authorize_url"])  # login, redirect to the callback, back to the page
    assert page.status_code == 200
    assert page.url == editor.server.url
    assert editor.call("GET", "/api/connection").json()["line"] == LINE
    objects = editor.call("GET", "/api/objects")
    assert objects.status_code == 200 and objects.json()["objects"]
    token = env_file.read_text().split(f"{ENV_NAME}=", 1)[1].strip()
    assert token and stat.S_IMODE(env_file.stat().st_mode) == 0o600
    # The used callback cannot be replayed.
    assert requests.get(page.history[0].url, timeout=30).status_code == 400


def test_editor_without_credentials_starts_and_offers_connect(tmp_path):
    config = tmp_path / "config.json"
    # client_id alone: no login flow is complete (client_id + client_secret would be client credentials).
    config.write_text(
        json.dumps({k: v for k, v in CONFIG.items() if k not in ("refresh_token", "client_secret")})
    )
    args = ["--config", str(config), "--port", "0", "--no-browser", "--env-file", str(tmp_path / ".env")]
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "tap-salesforce-groups-mapping"), "editor", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("Mapping editor: http://127.0.0.1:")
        url = line.split(": ", 1)[1].strip()
        base, token = url.split("/?token=")
        status = requests.get(f"{base}/api/connection", headers={"X-Editor-Token": token}, timeout=30).json()
        assert status["connected"] is False
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert "Not connected to Salesforce (no complete Salesforce credentials" in err
    assert CLIENT_SECRET not in err


def _what_the_target_sends(capsys, mapping, **target_config) -> dict[tuple[str, str], dict]:
    """Run the real tap, then the real target, and return each identification Amplitude received."""
    AMPLITUDE.reset()
    capsys.readouterr()
    TapSalesforceGroups(config={**CONFIG, "mapping": mapping}).sync_all()
    lines = capsys.readouterr().out
    target = TargetAmplitudeGroups(
        config={**BASE_CONFIG, "mapping": mapping, **target_config}, validate_config=True
    )
    target.listen(io.StringIO(lines))
    capsys.readouterr()
    sent = {}
    for request in AMPLITUDE.requests:
        for item in request.get("payload") or []:
            sent[(item["group_type"], item["group_value"])] = item
    return sent


@pytest.mark.parametrize("policies", [{}, {"null_values": "skip", "deleted_records": "flag"}])
def test_preview_is_what_the_target_sends(salesforce, editor, capsys, policies):
    account_only = {"version": 1, "mappings": MAPPING["mappings"][:1]}
    # A null and a deleted row among the first rows the preview reads.
    first = salesforce.org.rows("Account")[:5]
    salesforce.org.update("Account", first[0]["Id"], BillingCity=None)
    salesforce.org.soft_delete("Account", first[1]["Id"])
    before = editor.mapping_file.read_text()
    SALESFORCE.clear_requests()
    AMPLITUDE.reset()
    body = {"mapping": account_only, **policies} if policies else account_only
    response = editor.call("POST", "/api/preview", body)
    assert response.status_code == 200, response.text
    preview = response.json()
    queries = [r for r in SALESFORCE.requests if "/query" in r["path"]]
    assert len(queries) == 1 and queries[0]["query"].endswith("LIMIT 5")  # one small query per mapping
    assert editor.mapping_file.read_text() == before  # nothing written
    assert not AMPLITUDE.requests  # nothing sent
    (entry,) = preview["mappings"]
    assert entry["problems"] == []
    deleted_groups = 0 if policies else 1
    assert len(entry["groups"]) == 5 - deleted_groups and entry["deleted_ignored"] == deleted_groups
    sent = _what_the_target_sends(capsys, account_only, **policies)
    for group in entry["groups"]:
        assert group == sent[(group["group_type"], group["group_value"])]
    by_value = {g["group_value"]: g["group_properties"] for g in entry["groups"]}
    industry = "billing city"
    if policies:
        assert industry not in by_value[first[0]["Id"]].get("$unset", {})  # null_values: skip
        assert by_value[first[1]["Id"]]["$set"]["deleted"] is True  # deleted_records: flag
    else:
        assert by_value[first[0]["Id"]]["$unset"][industry] == "-"


def test_preview_refuses_bad_input(editor):
    bad = editor.call("POST", "/api/preview", {"version": 1, "mappings": []})
    assert bad.status_code == 422
    assert bad.json()["error"].startswith("the mapping is invalid")
    policy = editor.call("POST", "/api/preview", {"mapping": MAPPING, "null_values": "drop"})
    assert policy.status_code == 422
    assert policy.json()["error"] == "null_values must be one of unset, skip, not 'drop'"
    wrong = {"version": 1, "mappings": [{**MAPPING["mappings"][0], "group_name_field": "Nope"}]}
    answer = editor.call("POST", "/api/preview", wrong).json()
    assert answer["mappings"][0]["problems"] == ["Account: no field 'Nope' on Account"]
