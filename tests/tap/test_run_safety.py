"""Issue 6, tap side: signals, settings checked at start, errors retrying cannot fix, secrets.

The tap runs as a real process (``python -m tap_salesforce_groups``) against the emulator, so
exit codes, stderr lines and signal handling are what an orchestrator sees.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulators._server import Fault
from tap_salesforce_groups.tap import TapSalesforceGroups
from tests.support.tap import CONFIG, run_tap

SECRET = "refresh-token-that-must-not-leak"


def tap_process(tmp_path: Path, config: dict, *args: str, env: dict | None = None) -> subprocess.Popen[str]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return subprocess.Popen(
        [sys.executable, "-m", "tap_salesforce_groups", "--config", str(path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def run_cli(
    tmp_path: Path, config: dict, *args: str, env: dict | None = None
) -> subprocess.CompletedProcess[str]:
    proc = tap_process(tmp_path, config, *args, env=env)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error" in line.lower().split("]")[0] or "ERROR" in line]


# -- signals -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_reading_writes_state_for_what_was_emitted_and_exits_128_plus_n(
    salesforce, tmp_path, signum, code
):
    salesforce.faults.add(Fault(path="/query/", delay=30, count=5))  # every next page is slow
    proc = tap_process(tmp_path, {**CONFIG, "api_type": "rest"})
    assert proc.stdout is not None
    lines = []
    while True:  # read until the first page (200 rows) is out; the next page hangs
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        lines.append(json.loads(line))
        if sum(m["type"] == "RECORD" for m in lines) == 200:
            break
    started = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=20)
    assert time.monotonic() - started < 10  # did not wait for the slow page
    assert proc.returncode == code, err
    messages = lines + [json.loads(line) for line in out.splitlines()]
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    state = [m["value"] for m in messages if m["type"] == "STATE"][-1]
    assert len(records) == 200
    assert state["bookmarks"]["Account"]["replication_key_value"] == records[-1]["SystemModstamp"]
    assert "Traceback" not in err
    assert f"run stopped: interrupted by {signal.Signals(signum).name}" in err


# -- settings checked at start -------------------------------------------------------------------
BAD_SETTINGS = [
    ({"max_retries": -1}, "max_retries"),
    ({"request_timeout": 0}, "request_timeout"),
    ({"max_backoff": -1}, "max_backoff"),
    ({"bulk_threshold": 0}, "bulk_threshold"),
    ({"max_api_usage_percent": 101}, "max_api_usage_percent"),
    ({"api_version": "../../evil"}, "api_version"),
    ({"login_url": "http://example.com"}, "login_url must be an https:// URL"),
    ({"instance_url": "ftp://example.com"}, "instance_url must be an https:// URL"),
    ({"start_date": "yesterday"}, "start_date"),
    (
        {"client_secret": None, "refresh_token": None, "username": "u", "private_key": "not a key"},
        "private_key is not a PEM-encoded RSA private key",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_SETTINGS, ids=[m for _, m in BAD_SETTINGS])
def test_bad_settings_are_one_line_at_start_without_traceback(salesforce, tmp_path, overrides, message):
    config = {k: v for k, v in {**CONFIG, **overrides}.items() if v is not None}
    result = run_cli(tmp_path, config)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert message in result.stderr
    assert result.stdout == ""
    # No query started. (A cursor page, /query/<locator>, may still arrive from an earlier test
    # whose held request outlived it; it cannot come from a run that never queried.)
    assert [r for r in salesforce.requests if r["path"].endswith(("/query", "/queryAll"))] == []


def test_plain_http_is_allowed_for_loopback_only():
    from tap_salesforce_groups.settings import settings_problems

    def url_problems(url: str) -> list[str]:
        return [p for p in settings_problems({**CONFIG, "login_url": url}) if "login_url" in p]

    assert url_problems("http://127.0.0.1:8080") == []
    assert url_problems("http://localhost:8080") == []
    assert url_problems("http://[::1]:8080") == []
    assert url_problems("https://acme.my.salesforce.com") == []
    assert url_problems("http://10.0.0.1")
    assert url_problems("127.0.0.1:8080")  # no scheme


def test_a_mapping_file_that_is_not_utf8_is_one_line(salesforce, tmp_path):
    mapping = tmp_path / "mapping.json"
    mapping.write_bytes(b'{"version": 1, "mappings": [{"object": "Caf\xe9"}]}')
    config = {k: v for k, v in CONFIG.items() if k != "mapping"} | {"mapping_file": str(mapping)}
    result = run_cli(tmp_path, config)
    assert result.returncode == 1
    assert "not UTF-8 text: byte 0xe9 at offset" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ("{not json", "--state is not JSON"),
        ("[1, 2]", "--state must hold a JSON object"),
        (
            json.dumps({"bookmarks": {"Account": {"replication_key_value": "last tuesday"}}}),
            "state: bookmark of Account is not a timestamp",
        ),
    ],
)
def test_bad_state_is_one_line(salesforce, tmp_path, state, message):
    path = tmp_path / "state.json"
    path.write_text(state, encoding="utf-8")
    result = run_cli(tmp_path, CONFIG, "--state", str(path))
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_future_bookmark_is_a_warning_naming_the_stream(salesforce, capsys, caplog):
    future = {
        "bookmarks": {
            "Account": {
                "replication_key": "SystemModstamp",
                "replication_key_value": "2999-01-01T00:00:00+00:00",
            }
        }
    }
    run = run_tap(capsys, state=future)
    assert "bookmark of Account is in the future" in caplog.text
    assert "Account" not in run.records


# -- errors retrying cannot fix -------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("login_url", "env", "message"),
    [
        (None, {"REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}, "REQUESTS_CA_BUNDLE"),
        ("https://no-such-host.invalid", {}, "cannot resolve host no-such-host.invalid"),
        ("refused", {}, "connection refused by 127.0.0.1"),
    ],
    ids=["tls", "dns", "refused"],
)
def test_unfixable_connection_errors_fail_at_once_with_one_line(
    salesforce, tmp_path, login_url, env, message
):
    url = {None: CONFIG["login_url"], "refused": f"https://127.0.0.1:{free_port()}"}.get(login_url, login_url)
    config = {**CONFIG, "login_url": url, "refresh_token": SECRET, "max_retries": 5, "max_backoff": 30}
    started = time.monotonic()
    result = run_cli(tmp_path, config, env=env)
    assert time.monotonic() - started < 30  # no backoff: retrying cannot fix these
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr + result.stdout


# -- logs ----------------------------------------------------------------------------------------
def test_retries_log_one_line_each_and_verification_is_logged_once(salesforce, capsys, caplog):
    salesforce.faults.add(Fault(status=503, count=2, path="/query"))
    run_tap(capsys)
    retries = [m for m in caplog.messages if "Salesforce answered HTTP 503" in m]
    assert len(retries) == 2
    assert "Backing off" not in caplog.text
    catalog = TapSalesforceGroups(config=CONFIG).catalog_dict
    caplog.clear()
    TapSalesforceGroups(config=CONFIG, catalog=catalog).sync_all()
    assert not [m for m in caplog.messages if m.startswith("Mapping verified")]  # said once, at discovery
