"""`tap-salesforce-groups-mapping connect`: the OAuth web server flow with PKCE, end to end over HTTP.

The command runs as a subprocess against the Salesforce emulator; the browser's part (the login
page, its form post, the redirect to the callback) is played with ``requests``. The emulator's
authorize endpoint, code grant and identity URL follow Salesforce Help ("OAuth 2.0 Web Server
Flow for Web App Integration", "Identity URLs"; see emulators/salesforce/webflow.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from emulators._server import Fault
from emulators.salesforce import CLIENT_SECRET, PASSWORD, REFRESH_TOKEN, USERNAME
from tap_salesforce_groups.auth import login
from tap_salesforce_groups.client import make_session
from tap_salesforce_groups.connect import ENV_NAME, store_refresh_token
from tests.support.tap import CONFIG

BIN = Path(sys.executable).parent / "tap-salesforce-groups-mapping"
LINE = "Connected to 127.0.0.1 as integration@emulator.example (integration@emulator.example)"


class _Form(HTMLParser):
    """The login page's form: its action and every input's name and value."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.action = a.get("action") or ""
        elif tag == "input" and a.get("name"):
            self.fields[str(a["name"])] = a.get("value") or ""


def browser_login(
    authorize_url: str,
    username: str = USERNAME,
    password: str = PASSWORD,
    action: str = "allow",
    verify: str | bool = True,
    follow: bool = True,
) -> Any:
    """What the user does in the browser: open the URL, post the form, follow the redirect.

    With ``follow=False``, the redirect's URL instead of following it.
    """
    page = requests.get(authorize_url, timeout=30, verify=verify)
    assert page.status_code == 200, page.text
    form = _Form()
    form.feed(page.text)
    base = "{0.scheme}://{0.netloc}".format(urlsplit(authorize_url))
    posted = requests.post(
        base + form.action,
        data={**form.fields, "username": username, "pw": password, "action": action},
        allow_redirects=False,
        timeout=30,
        verify=verify,
    )
    if posted.status_code != 302:
        return posted
    if not follow:
        return posted.headers["Location"]
    return requests.get(posted.headers["Location"], timeout=30)


class Connect:
    """The command running in the background, its stderr read line by line."""

    def __init__(self, config: Path, env_file: Path, *extra: str) -> None:
        args = ["--config", str(config), "--port", "0", "--no-browser", "--env-file", str(env_file)]
        self.process = subprocess.Popen(
            [str(BIN), "connect", *args, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ,
        )
        self.err: list[str] = []
        self.callback = self._read_until("Callback URL").split(": ", 1)[1]
        self.url = self._read_until("Log in to Salesforce at:").split(": ", 1)[1]

    def _read_until(self, prefix: str) -> str:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.err.append(line)
            if line.startswith(prefix):
                return line.strip()
        raise AssertionError("".join(self.err))

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, "".join(self.err) + err


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "config.json"
    # No refresh token yet: that is what connect is for.
    path.write_text(json.dumps({k: v for k, v in CONFIG.items() if k != "refresh_token"}))
    return path


def stored_token(env_file: Path) -> str:
    lines = [line for line in env_file.read_text().splitlines() if line.startswith(ENV_NAME + "=")]
    assert len(lines) == 1, lines
    return lines[0].split("=", 1)[1]


def test_connect_end_to_end(salesforce, config, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(f"# kept\nOTHER=1\n{ENV_NAME}=old-token\nexport LAST=2")
    run = Connect(config, env_file)
    # The authorize URL: the login host, the loopback callback, S256 PKCE and a random state.
    query = parse_qs(urlsplit(run.url).query)
    assert run.url.startswith(f"{salesforce.url}/services/oauth2/authorize?")
    assert re.fullmatch(r"http://localhost:\d+/oauth/callback", run.callback)
    assert query["redirect_uri"] == [run.callback]
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43 and len(query["state"][0]) >= 32
    assert query["response_type"] == ["code"]
    done = browser_login(run.url)
    assert done.status_code == 200 and "Connected" in done.text
    code, out, err = run.finish()
    assert code == 0, err
    assert out == LINE + "\n"
    token = stored_token(env_file)
    assert token not in (REFRESH_TOKEN, "old-token")
    # Other lines kept (a last line without a newline too), the older value replaced, 0600.
    assert env_file.read_text() == f"# kept\nOTHER=1\n{ENV_NAME}={token}\nexport LAST=2\n"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert token not in out + err and CLIENT_SECRET not in out + err
    # The stored token logs the tap in (the refresh token flow it runs on every run).
    session = make_session(0, 0)
    access, instance = login(session, {**CONFIG, "refresh_token": token}, "refresh_token", 30)
    assert instance == salesforce.url and access


def test_a_wrong_state_is_refused_and_connect_keeps_waiting(salesforce, config, tmp_path):
    env_file = tmp_path / ".env"
    run = Connect(config, env_file)
    forged = requests.get(f"{run.callback}?code=stolen&state=not-the-state", timeout=30)
    assert forged.status_code == 400
    assert run.process.poll() is None  # still waiting
    # A cross-site page cannot end the flow with an error either.
    assert requests.get(f"{run.callback}?error=access_denied", timeout=30).status_code == 400
    assert browser_login(run.url).status_code == 200
    code, out, err = run.finish()
    assert code == 0, err
    assert out == LINE + "\n"


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        ("access_denied", "click Allow"),
        ("redirect_uri_mismatch", "to the connected app's Callback URL list"),
    ],
)
def test_an_error_callback_ends_with_one_line(salesforce, config, tmp_path, error, fix):
    env_file = tmp_path / ".env"
    run = Connect(config, env_file)
    if error == "access_denied":  # the Deny button of the emulator's login page
        answer = browser_login(run.url, action="deny")
    else:  # what a callback with an error looks like (Salesforce shows this one on its own page)
        state = parse_qs(urlsplit(run.url).query)["state"][0]
        answer = requests.get(f"{run.callback}?error={error}&error_description=x&state={state}", timeout=30)
    assert answer.status_code == 400
    code, out, err = run.finish()
    assert code == 1
    assert out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"Cannot connect to Salesforce: Salesforce refused the connection ({error}")
    assert fix in last
    assert not env_file.exists()


def test_bad_credentials_stay_on_the_login_page(salesforce, config, tmp_path):
    run = Connect(config, tmp_path / ".env")
    page = browser_login(run.url, password="wrong")
    assert page.status_code == 200
    assert "Please check your username and password" in page.text
    assert run.process.poll() is None
    browser_login(run.url)
    assert run.finish()[0] == 0


def test_no_callback_times_out_with_one_line(salesforce, config, tmp_path):
    """A mistyped callback URL on the app ends here too: Salesforce shows its error page and never calls back."""
    salesforce.web_flow.callback_urls = {"http://127.0.0.1:8765/oauth/callback"}  # not the one connect prints
    run = Connect(config, tmp_path / ".env", "--timeout", "1")
    page = requests.get(run.url, timeout=30)  # the browser: Salesforce's page, no redirect to connect
    assert page.status_code == 400 and "redirect_uri_mismatch" in page.text
    code, _, err = run.finish()
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "Cannot connect to Salesforce: no callback from Salesforce within 1 second: open the URL "
        "above, log in and click Allow, then run connect again; if Salesforce showed an error page "
        "such as redirect_uri_mismatch, register the callback URL printed above on the connected app "
        "exactly (localhost, not 127.0.0.1, and the port) or pass --port with a port it lists"
    )
    assert run.callback in err  # printed above, to be registered as it is


@pytest.mark.parametrize(("stop", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_connect_with_one_line(salesforce, config, tmp_path, stop, status):
    run = Connect(config, tmp_path / ".env")
    run.process.send_signal(stop)
    code, _, err = run.finish()
    assert code == status
    name = "Ctrl-C" if stop == signal.SIGINT else "SIGTERM"
    assert err.strip().splitlines()[-1] == f"connect: stopped by {name}"
    assert "Traceback" not in err


# -- the emulator's side, per Salesforce's documentation ---------------------------------------------
def _authorize(salesforce, **params):
    query = {
        "response_type": "code",
        "client_id": CONFIG["client_id"],
        "redirect_uri": "http://localhost:1717/oauth/callback",
        "state": "s",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",  # RFC 7636 appendix B
        "code_challenge_method": "S256",
        **params,
    }
    return requests.Session().get(f"{salesforce.url}/services/oauth2/authorize", params=query, timeout=30)


def _code(salesforce) -> str:
    page = _authorize(salesforce)
    form = _Form()
    form.feed(page.text)
    posted = requests.post(
        salesforce.url + form.action,
        data={**form.fields, "username": USERNAME, "pw": PASSWORD, "action": "allow"},
        allow_redirects=False,
        timeout=30,
    )
    assert posted.status_code == 302
    location = posted.headers["Location"]
    assert location.startswith("http://localhost:1717/oauth/callback?code=aPrx")
    assert "%3D%3D" in location  # Salesforce's codes end in "==", URL-encoded in the redirect
    return parse_qs(urlsplit(location).query)["code"][0]


def _redeem(salesforce, code: str, **overrides):
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": "http://localhost:1717/oauth/callback",
        "client_id": CONFIG["client_id"],
        "client_secret": CLIENT_SECRET,
        "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",  # RFC 7636 appendix B
        **overrides,
    }
    return requests.post(f"{salesforce.url}/services/oauth2/token", data=data, timeout=30)


def test_emulator_code_grant_checks_pkce_and_is_single_use(salesforce):
    bad = _redeem(salesforce, _code(salesforce), code_verifier="x" * 43)
    assert bad.status_code == 400
    assert bad.json() == {"error": "invalid_grant", "error_description": "invalid code verifier"}
    code = _code(salesforce)
    mismatch = _redeem(salesforce, code, redirect_uri="http://localhost:1/oauth/callback")
    assert mismatch.json()["error"] == "redirect_uri_mismatch"
    assert _redeem(salesforce, code).json()["error"] == "invalid_grant"  # used up by the refusal
    code = _code(salesforce)
    good = _redeem(salesforce, code)
    assert good.status_code == 200
    body = good.json()
    assert {"access_token", "refresh_token", "instance_url", "id", "issued_at", "signature"} <= set(body)
    assert "expires_in" not in body
    again = _redeem(salesforce, code)
    assert again.json() == {"error": "invalid_grant", "error_description": "invalid authorization code"}
    # The identity URL names the user; a bad token is 403 Bad_OAuth_Token.
    who = requests.get(body["id"], headers={"Authorization": f"Bearer {body['access_token']}"}, timeout=30)
    assert who.status_code == 200
    assert who.json()["username"] == USERNAME and who.json()["email"]
    assert who.json()["organization_id"] in body["id"] and who.json()["user_id"] in body["id"]
    assert requests.get(body["id"], headers={"Authorization": "Bearer x"}, timeout=30).status_code == 403


def test_emulator_authorize_refuses_what_salesforce_refuses(salesforce):
    # Unknown app or unregistered callback: an error page on the login host, never a redirect.
    wrong_client = _authorize(salesforce, client_id="nope")
    assert wrong_client.status_code == 400 and "invalid_client_id" in wrong_client.text
    salesforce.web_flow.callback_urls = {"http://localhost:8765/oauth/callback"}
    mismatch = _authorize(salesforce)
    assert mismatch.status_code == 400 and "redirect_uri_mismatch" in mismatch.text
    salesforce.web_flow.callback_urls = None
    # "Require PKCE": no challenge is an error redirect.
    no_pkce = requests.get(
        f"{salesforce.url}/services/oauth2/authorize",
        params={"response_type": "code", "client_id": CONFIG["client_id"], "state": "s"}
        | {"redirect_uri": "http://localhost:1717/oauth/callback"},
        allow_redirects=False,
        timeout=30,
    )
    assert no_pkce.status_code == 302
    assert "error=invalid_request" in no_pkce.headers["Location"] and "state=s" in no_pkce.headers["Location"]


def test_store_refresh_token_keeps_other_lines(tmp_path):
    env_file = tmp_path / "nested" / ".env"
    store_refresh_token(env_file, "first")
    assert env_file.read_text() == f"{ENV_NAME}=first\n"
    env_file.write_text(f"A=1\n{ENV_NAME}=first\nB='x y'\n{ENV_NAME}=dup\n")
    env_file.chmod(0o644)
    store_refresh_token(env_file, 'we"ird\\')
    assert env_file.read_text() == f'A=1\n{ENV_NAME}="we\\"ird\\\\"\nB=\'x y\'\n'
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert [p.name for p in env_file.parent.iterdir()] == [".env"]  # no temporary file left


def test_concurrent_callbacks_finish_once(salesforce, config, tmp_path):
    """Two tabs racing: one connection, one stored token; the other tab is told connect is done.

    Both tabs log in first, then follow their redirects at the same moment. The first callback's
    code exchange is held for a second (a slow Salesforce), so the second callback surely arrives
    while the first holds the flow, even on a loaded machine: it must wait and find the flow done.
    """
    env_file = tmp_path / ".env"
    run = Connect(config, env_file)
    logged_in = threading.Barrier(2)
    statuses: list[int] = []

    def tab() -> None:
        location = browser_login(run.url, follow=False)
        logged_in.wait(timeout=60)
        statuses.append(requests.get(location, timeout=30).status_code)

    salesforce.faults.add(Fault(delay=1.0, count=1, path="/services/oauth2/token"))
    threads = [threading.Thread(target=tab) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    code, out, _ = run.finish()
    assert code == 0
    assert out == LINE + "\n"
    assert stored_token(env_file)
    assert sorted(statuses) == [200, 410]  # 410: "Already done", connect has finished


def test_the_browser_is_opened_without_the_state_in_any_argv(salesforce, config, tmp_path):
    """As the editor does (tests/editor/test_cli.py).

    The browser gets a private launcher file, so no local user reads the login URL's state from a process
    list.
    """
    import html
    import time
    from urllib.parse import unquote

    from tests.editor.test_cli import FAKE_BROWSER

    record = tmp_path / "browser.json"
    browser = tmp_path / "fake-browser"
    browser.write_text(FAKE_BROWSER.format(python=sys.executable, record=str(record)))
    browser.chmod(0o755)
    args = ["--config", str(config), "--port", "0", "--env-file", str(tmp_path / ".env")]
    process = subprocess.Popen(
        [str(BIN), "connect", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "BROWSER": str(browser)},
    )
    for _ in range(600):
        if record.exists() and record.read_text():
            break
        time.sleep(0.05)
    seen = json.loads(record.read_text())
    page = seen["page"]
    url = html.unescape(re.search(r'content="0;url=([^"]+)"', page).group(1))
    state = parse_qs(urlsplit(url).query)["state"][0]
    assert state not in " ".join(seen["argv"] + seen["cmdline"])
    assert seen["argv"][1].startswith("file:///") and seen["mode"] == 0o600
    assert browser_login(url).status_code == 200
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0 and out == LINE + "\n"
    assert not Path(unquote(urlsplit(seen["argv"][1]).path)).exists()  # removed at the end


def test_a_connection_never_shows_its_token():
    from tap_salesforce_groups.connect import Connection

    connection = Connection(
        "https://acme.my.salesforce.com", "u@acme.example", "u@acme.example", "5Aep861secret"
    )
    assert "5Aep861secret" not in repr(connection) + str(connection)
    assert connection.line == "Connected to acme.my.salesforce.com as u@acme.example (u@acme.example)"
