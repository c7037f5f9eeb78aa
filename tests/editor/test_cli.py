"""`tap-salesforce-groups-mapping editor`: starts after login, prints the URL, stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import requests

from emulators.salesforce import CLIENT_SECRET
from tests.support.tap import CONFIG

BIN = Path(sys.executable).parent / "tap-salesforce-groups-mapping"


def start(config: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN), "editor", "--config", str(config), "--port", "0", "--no-browser", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ,
    )


@pytest.fixture
def config(tmp_path):
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps(CONFIG["mapping"]))
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**CONFIG, "mapping": None, "mapping_file": str(mapping)}))
    return path


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_editor_prints_its_url_and_stops_cleanly(config, stop):
    process = start(config)
    try:
        line = process.stdout.readline()
        assert line.startswith("Mapping editor: http://127.0.0.1:"), line
        url = line.split(": ", 1)[1].strip()
        assert "?token=" in url
        page = requests.get(url, timeout=30)
        assert page.status_code == 200
        base = url.split("/?")[0]
        token = url.split("token=")[1]
        assert requests.get(base + "/api/objects", timeout=30).status_code == 403
        objects = requests.get(base + "/api/objects", headers={"X-Editor-Token": token}, timeout=30)
        assert objects.status_code == 200
        # Next reads one row per object; its Singer messages must not reach the editor's stdout.
        verified = requests.post(
            base + "/api/verify",
            data=json.dumps(CONFIG["mapping"]),
            headers={"X-Editor-Token": token},
            timeout=60,
        )
        assert verified.json()["problems"] == []
    finally:
        process.send_signal(stop)
        out, err = process.communicate(timeout=30)
    assert process.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[stop]  # 128 + the signal
    assert out == ""  # stdout held the URL line only (no Singer message from verify or the SDK)
    assert "Traceback" not in err
    name = "Ctrl-C" if stop == signal.SIGINT else "SIGTERM"
    assert err.strip().splitlines()[-1] == f"Mapping editor stopped by {name}."
    assert CLIENT_SECRET not in out + err


def test_each_run_has_its_own_token(config):
    tokens = []
    for _ in range(2):
        process = start(config)
        tokens.append(process.stdout.readline().split("token=")[1].strip())
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert len(tokens[0]) >= 40
    assert tokens[0] != tokens[1]


def test_bad_credentials_stop_before_serving_with_one_line(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**CONFIG, "client_secret": "not-the-secret"}))
    process = start(path)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert lines[-1].startswith("Cannot start the mapping editor: Salesforce login (refresh_token flow)")
    assert "Traceback" not in err
    assert "not-the-secret" not in err


def test_a_busy_port_is_one_line(config):
    first = start(config)
    try:
        port = first.stdout.readline().split(":")[3].split("/")[0]
        second = subprocess.run(
            [str(BIN), "editor", "--config", str(config), "--port", port, "--no-browser"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)
    assert second.returncode == 1
    assert second.stderr.strip().splitlines()[-1] == (
        f"Cannot start the mapping editor on 127.0.0.1:{port}: the port is in use (pass --port)"
    )


def test_a_wildcard_host_is_refused(config):
    # The Host header must name the bound address; no browser ever sends 0.0.0.0.
    run = subprocess.run(
        [str(BIN), "editor", "--config", str(config), "--host", "0.0.0.0", "--no-browser"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert run.stderr.strip() == (
        "Cannot start the mapping editor on 0.0.0.0: give one address to listen on (the Host header "
        "is checked against it), e.g. --host 127.0.0.1"
    )


FAKE_BROWSER = """#!{python}
import json, os, stat, sys
from pathlib import Path
from urllib.parse import urlsplit, unquote
target = Path(unquote(urlsplit(sys.argv[1]).path)) if sys.argv[1].startswith("file:") else None
seen = {{
    "argv": sys.argv,
    "cmdline": Path(f"/proc/{{os.getpid()}}/cmdline").read_bytes().decode().split("\\0"),
    "mode": stat.S_IMODE(target.stat().st_mode) if target else None,
    "page": target.read_text() if target else None,
}}
Path({record!r}).write_text(json.dumps(seen))
"""


def test_the_browser_is_opened_without_the_token_in_any_argv(config, tmp_path):
    # A launcher's argv is world-readable (ps, /proc/PID/cmdline): it must name a private file,
    # not the URL with the token (Jupyter's jupyter-*-open.html does the same).
    record = tmp_path / "browser.json"
    browser = tmp_path / "fake-browser"
    browser.write_text(FAKE_BROWSER.format(python=sys.executable, record=str(record)))
    browser.chmod(0o755)
    process = subprocess.Popen(
        [str(BIN), "editor", "--config", str(config), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "BROWSER": str(browser)},
    )
    try:
        url = process.stdout.readline().split(": ", 1)[1].strip()  # the editor's own terminal
        token = url.split("token=")[1]
        for _ in range(600):
            if record.exists():
                break
            time.sleep(0.05)
        seen = json.loads(record.read_text())
        own = Path(f"/proc/{process.pid}/cmdline").read_bytes().decode()
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert token not in " ".join(seen["argv"] + seen["cmdline"])
    assert token not in own
    assert seen["argv"][1].startswith("file:///") and seen["argv"][1].endswith(".html")
    assert seen["mode"] == 0o600  # only this user can read the token in it
    assert f'content="0;url={url}"' in seen["page"]  # it sends the browser on to the editor
    launcher = Path(unquote(urlsplit(seen["argv"][1]).path))
    assert not launcher.exists()  # removed when the editor stops
    assert process.returncode == 130  # stopped by Ctrl-C
    assert "Traceback" not in err
