"""Connect: the OAuth 2.0 web server flow with PKCE that gets the tap its refresh token.

The pieces are plain functions so that the command line (``tap-salesforce-groups-mapping
connect``, which serves its own callback) and the editor (whose server answers the callback
on its own port) run the same flow:

1. :class:`Flow` holds a random ``state`` and PKCE verifier and builds the authorize URL
   (Salesforce Help, "OAuth 2.0 Web Server Flow for Web App Integration":
   https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_web_server_flow_ca.htm).
2. :meth:`Flow.callback` checks the callback's ``state``, then redeems the code
   (``grant_type=authorization_code`` with ``code_verifier``) and reads the identity URL
   from the token response's ``id`` (Salesforce Help, "Identity URLs":
   https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_using_openid.htm).
3. :func:`store_refresh_token` writes ``TAP_SALESFORCE_GROUPS_REFRESH_TOKEN`` into the env file
   Meltano reads, atomically and private (0600).

No token is ever printed or logged: only the instance host, username and email are shown.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import html
import os
import re
import secrets
import threading
import webbrowser
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from groups_mapping import write_atomically
from tap_salesforce_groups.auth import login_base_url
from tap_salesforce_groups.client import connection_problem, make_session

ENV_NAME = "TAP_SALESFORCE_GROUPS_REFRESH_TOKEN"
CALLBACK_PATH = "/oauth/callback"
TIMEOUT_S = 300  # how long to wait for the browser's callback
_ENV_LINE = re.compile(rf"^\s*(?:export\s+)?{ENV_NAME}\s*=")
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9._~+/=:!-]+")

# What to do about each error= the authorize endpoint can send back (RFC 6749 §4.1.2.1 and
# Salesforce's own codes); anything else is shown with Salesforce's description.
_FIXES = {
    "access_denied": "access was denied in the browser; run connect again and click Allow",
    "redirect_uri_mismatch": "add {redirect_uri} to the connected app's Callback URL list (Setup > App Manager > "
    "the app > Edit), then run connect again",
    "invalid_client_id": "client_id is not the connected app's Consumer Key; check client_id",
    "invalid_client": "client_id/client_secret do not match the connected app; check both",
    "unsupported_response_type": "the connected app does not allow the web server flow; enable OAuth settings on it",
    "invalid_scope": "the connected app lacks the 'api' and 'refresh_token' scopes; add them to its OAuth scopes",
    "immediate_unsuccessful": "log in to Salesforce in the browser first, then run connect again",
}


class ConnectError(Exception):
    """The flow ended without a refresh token; the message is one line saying what to fix."""


class StateMismatch(Exception):
    """A callback whose ``state`` is not this flow's: refused (400), and the flow keeps waiting."""


@dataclass(frozen=True)
class Connection:
    """Who the new refresh token logs in as."""

    instance_url: str
    username: str
    email: str
    refresh_token: str = field(repr=False)  # never in a log line or a traceback

    @property
    def line(self) -> str:
        """``Connected to <instance host> as <username> (<email>)``."""
        return connected_line(self.instance_url, self.username, self.email)


def connected_line(instance_url: str, username: str, email: str | None) -> str:
    """``Connected to <instance host> as <username> (<email>)``: what connect and the editor show."""
    return f"Connected to {urlsplit(instance_url).hostname} as {username} ({email or 'no email'})"


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of ``verifier``: base64url(sha256(verifier)), no padding (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def redirect_uri(port: int) -> str:
    """The callback URL to register on the connected app: ``http://localhost:PORT/oauth/callback``."""
    return f"http://localhost:{port}{CALLBACK_PATH}"


class Flow:
    """One run of the web server flow: its state, PKCE verifier, redirect URI and settings."""

    def __init__(self, settings: Mapping[str, Any], redirect: str) -> None:
        if not settings.get("client_id"):
            raise ConnectError(
                "client_id is not set: set it to the connected app's Consumer Key "
                "(meltano config set --store=dotenv tap-salesforce-groups client_id …)"
            )
        self.settings = settings
        self.redirect_uri = redirect
        self.state = secrets.token_urlsafe(32)
        self.verifier = secrets.token_urlsafe(64)  # 86 characters, within RFC 7636's 43-128
        self.login_base = login_base_url(settings)

    @property
    def authorize_url(self) -> str:
        """Where the user logs in: the login host's ``/services/oauth2/authorize``."""
        query = {
            "response_type": "code",
            "client_id": str(self.settings["client_id"]),
            "redirect_uri": self.redirect_uri,
            "scope": "api refresh_token id",
            "state": self.state,
            "code_challenge": pkce_challenge(self.verifier),
            "code_challenge_method": "S256",
        }
        return f"{self.login_base}/services/oauth2/authorize?{urlencode(query)}"

    def check_state(self, params: Mapping[str, str]) -> None:
        """Raise :class:`StateMismatch` unless the callback carries this flow's ``state``."""
        given = params.get("state") or ""
        if not secrets.compare_digest(given.encode(), self.state.encode()):
            raise StateMismatch("this callback's state is not the one connect sent: refused")

    def callback(self, params: Mapping[str, str]) -> Connection:
        """Finish the flow from the callback's query parameters (state checked first)."""
        self.check_state(params)
        error = params.get("error")
        if error:
            description = params.get("error_description") or "no description"
            fix = _FIXES.get(error, "").format(redirect_uri=self.redirect_uri)
            raise ConnectError(
                f"Salesforce refused the connection ({error}: {description})" + (f": {fix}" if fix else "")
            )
        code = params.get("code")
        if not code:
            raise ConnectError("the callback carried neither a code nor an error; run connect again")
        return self._redeem(code)

    def _redeem(self, code: str) -> Connection:
        settings = self.settings
        session = make_session(
            int(settings.get("max_retries") or 3), float(settings.get("max_backoff") or 10)
        )
        timeout = float(settings.get("request_timeout") or 60)
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "client_id": str(settings["client_id"]),
            "code_verifier": self.verifier,
        }
        if settings.get("client_secret"):
            data["client_secret"] = str(settings["client_secret"])
        url = f"{self.login_base}/services/oauth2/token"
        try:
            response = session.post(url, data=data, timeout=timeout)
            body = _json(response)
            if response.status_code != 200 or "access_token" not in body:
                reason = f"{body.get('error', f'HTTP {response.status_code}')}: {body.get('error_description', '')}"
                raise ConnectError(f"Salesforce refused the authorization code at {url} ({reason.strip()})")
            if not body.get("refresh_token"):
                raise ConnectError(
                    "Salesforce sent no refresh token: add the 'refresh_token, offline_access' scope to "
                    "the connected app's OAuth scopes, then run connect again"
                )
            identity = session.get(
                str(body["id"]),
                headers={"Authorization": f"Bearer {body['access_token']}", "Accept": "application/json"},
                timeout=timeout,
            )
            who = _json(identity)
            if identity.status_code != 200 or "username" not in who:
                raise ConnectError(
                    f"logged in, but the identity URL answered HTTP {identity.status_code}: "
                    "add the 'id' scope to the connected app's OAuth scopes"
                )
        except requests.RequestException as exc:
            raise ConnectError(connection_problem(exc)) from None
        instance = str(settings.get("instance_url") or body["instance_url"])
        return Connection(
            instance, str(who["username"]), str(who.get("email") or "no email"), str(body["refresh_token"])
        )


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def default_env_file() -> Path:
    """The project's ``.env``, which Meltano reads: in ``MELTANO_PROJECT_ROOT`` under Meltano."""
    return Path(os.environ.get("MELTANO_PROJECT_ROOT") or ".") / ".env"


def store_refresh_token(env_file: Path, token: str) -> None:
    """Set ``TAP_SALESFORCE_GROUPS_REFRESH_TOKEN`` in ``env_file``.

    Other lines kept, an older value replaced, written to a temporary file (0600) then renamed over the old
    one.
    """
    value = (
        token
        if _PLAIN_VALUE.fullmatch(token)
        else '"' + token.replace("\\", "\\\\").replace('"', '\\"') + '"'
    )
    line = f"{ENV_NAME}={value}\n"
    try:
        old = env_file.read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        old = []
    lines: list[str] = []
    placed = False
    for existing in old:
        if _ENV_LINE.match(existing):
            if not placed:
                lines.append(line)
                placed = True
            continue  # a second definition would shadow or be shadowed: keep one
        lines.append(existing if existing.endswith("\n") else existing + "\n")
    if not placed:
        lines.append(line)
    write_atomically(env_file, "".join(lines), mode=0o600)


# -- the command line's own callback server --------------------------------------------------------
_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
    "<body><h1>{title}</h1><p>{text}</p></body></html>"
)


class _CallbackServer(ThreadingHTTPServer):
    """Answers ``GET /oauth/callback`` for one :class:`Flow`; everything else is 404."""

    daemon_threads = True

    def __init__(self, flow_for: Callable[[int], Flow], port: int) -> None:
        super().__init__(("127.0.0.1", port), _CallbackHandler)
        self.port = self.server_address[1]
        self.flow = flow_for(self.port)
        self.done = threading.Event()
        self.lock = threading.Lock()  # one callback at a time: two racing tabs finish the flow once
        self.result: Connection | ConnectError | None = None


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _CallbackServer
    server_version = "tap-salesforce-groups-connect"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the callback's query string holds the authorization code."""

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        host = (self.headers.get("Host") or "").lower()
        if host not in (f"localhost:{self.server.port}", f"127.0.0.1:{self.server.port}"):
            self._page(
                HTTPStatus.FORBIDDEN, "Refused", "This address only answers the Salesforce login's callback."
            )
            return
        if parts.path != CALLBACK_PATH:
            self._page(HTTPStatus.NOT_FOUND, "Not found", "Nothing here: connect waits for /oauth/callback.")
            return
        with self.server.lock:
            self._callback(parse_qs(parts.query))

    def _callback(self, query: dict[str, list[str]]) -> None:
        if self.server.done.is_set():
            self._page(HTTPStatus.GONE, "Already done", "connect has finished; close this tab.")
            return
        params = {k: v[-1] for k, v in query.items()}
        try:
            connection = self.server.flow.callback(params)
        except StateMismatch as exc:
            self._page(HTTPStatus.BAD_REQUEST, "Refused", f"{exc}. Use the link connect printed.")
            return
        except ConnectError as exc:
            self.server.result = exc
            self._page(HTTPStatus.BAD_REQUEST, "Not connected", html.escape(str(exc)))
        else:
            self.server.result = connection
            self._page(HTTPStatus.OK, "Connected", html.escape(connection.line) + ". You can close this tab.")
        self.server.done.set()

    def _page(self, status: HTTPStatus, title: str, text: str) -> None:
        body = _PAGE.format(title=title, text=text).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(body)


def run_connect(
    settings: Mapping[str, Any],
    *,
    port: int,
    env_file: Path,
    open_browser: bool,
    timeout: float = TIMEOUT_S,
    echo: Callable[[str], None],
) -> Connection:
    """Connect to Salesforce in the browser and store the refresh token.

    Serves the callback on ``port``, prints (and opens) the authorize URL, waits for the login
    and stores the refresh token; raises :class:`ConnectError` with one line on any failure.
    """
    try:
        server = _CallbackServer(lambda bound: Flow(settings, redirect_uri(bound)), port)
    except OSError as exc:
        reason = f"port {port} is in use (pass --port)" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ConnectError(f"cannot listen for the callback on localhost:{port}: {reason}") from None
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    launcher: Path | None = None
    try:
        flow = server.flow
        echo(f"Callback URL (register it on the connected app): {flow.redirect_uri}")
        echo(f"Log in to Salesforce at: {flow.authorize_url}")
        if open_browser:
            # Through a private file, as the editor does: the browser's argv (readable by any
            # local user) names a path, never the state that guards the callback.
            from tap_salesforce_groups.editor import launcher_file  # noqa: PLC0415 (editor imports this module)

            launcher = launcher_file(flow.authorize_url, "the Salesforce login")
            webbrowser.open(launcher.as_uri())
        if not server.done.wait(timeout):
            amount, unit = (timeout / 60, "minute") if timeout >= 60 else (timeout, "second")
            minutes = f"{amount:g} {unit}{'' if amount == 1 else 's'}"
            # Salesforce answers an unregistered callback URL (redirect_uri_mismatch) with an error
            # page of its own and never calls back: the wait ends here, and says so.
            raise ConnectError(
                f"no callback from Salesforce within {minutes}: open the URL above, log in and click "
                "Allow, then run connect again; if Salesforce showed an error page such as "
                "redirect_uri_mismatch, register the callback URL printed above on the connected app "
                "exactly (localhost, not 127.0.0.1, and the port) or pass --port with a port it lists"
            )
    finally:
        server.shutdown()
        server.server_close()
        if launcher is not None:
            with contextlib.suppress(OSError):
                launcher.unlink()
    result = server.result
    if isinstance(result, ConnectError):
        raise result
    assert result is not None
    try:
        store_refresh_token(env_file, result.refresh_token)
    except OSError as exc:
        raise ConnectError(f"connected, but cannot write {env_file}: {exc.strerror}") from None
    return result
