"""The OAuth 2.0 web server flow with PKCE.

The authorize endpoint's login page, its codes, and the ``authorization_code`` grant that redeems them.

Shapes follow Salesforce Help, "OAuth 2.0 Web Server Flow for Web App Integration"
(https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_oauth_web_server_flow_ca.htm):

- ``GET /services/oauth2/authorize?response_type=code&client_id=…&redirect_uri=…&state=…
  &code_challenge=…&code_challenge_method=S256`` shows the login page; a good login redirects
  (302) to ``redirect_uri?code=…&state=…``. The code is single use and valid for 15 minutes;
  Salesforce's codes end in ``==`` and arrive URL-encoded, so a client must decode them.
- A refused approval redirects with ``error=access_denied&error_description=end-user denied
  authorization``. An unknown ``client_id`` or a ``redirect_uri`` that is not the connected
  app's callback URL is *not* redirected (the callback cannot be trusted): Salesforce shows an
  error page naming ``invalid_client_id`` or ``redirect_uri_mismatch``.
- ``POST /services/oauth2/token`` with ``grant_type=authorization_code``, ``code``,
  ``redirect_uri``, ``client_id``, ``client_secret`` (when the app requires it) and
  ``code_verifier``; ``base64url(sha256(code_verifier))`` must equal the ``code_challenge``
  (RFC 7636 §4.6). Failures are 400 ``invalid_grant`` ("invalid authorization code", "invalid
  code verifier") or ``redirect_uri_mismatch``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from .auth import OAuthError
from .credentials import CLIENT_ID, CLIENT_SECRET, PASSWORD, USERNAME

CODE_TTL_S = 15 * 60  # Salesforce: an authorization code is valid for 15 minutes
# Without a configured list, the connected app's callback is any loopback /oauth/callback, the
# URL `tap-salesforce-groups-mapping connect` uses (whatever --port says).
DEFAULT_CALLBACK = re.compile(r"http://(localhost|127\.0\.0\.1):\d{1,5}/oauth/callback")


@dataclass
class _Grant:
    redirect_uri: str
    challenge: str | None
    expires: float


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of ``verifier`` (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class WebServerFlow:
    """The authorize endpoint and the codes it hands out.

    ``callback_urls`` are the connected app's registered callback URLs (None: any loopback
    ``/oauth/callback``); ``require_pkce`` and ``require_secret`` are the app's "Require Proof
    Key for Code Exchange" and "Require Secret for Web Server Flow" options.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._codes: dict[str, _Grant] = {}
        self.callback_urls: set[str] | None = None
        self.require_pkce = True
        self.require_secret = True
        self.logins = 0  # successful logins on the page

    def reset(self) -> None:
        with self._lock:
            self._codes.clear()
        self.callback_urls, self.require_pkce, self.require_secret, self.logins = None, True, True, 0

    def _callback_ok(self, uri: str) -> bool:
        if self.callback_urls is not None:
            return uri in self.callback_urls
        return DEFAULT_CALLBACK.fullmatch(uri) is not None

    # -- GET/POST /services/oauth2/authorize ----------------------------------------------------
    def authorize(self, request: Request) -> Response:
        params = request.args if request.method == "GET" else request.form
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri", "")
        state = params.get("state")
        if client_id != CLIENT_ID:
            return _error_page("invalid_client_id", "client identifier invalid")
        if not self._callback_ok(redirect_uri):
            return _error_page("redirect_uri_mismatch", "redirect_uri must match configuration")
        if params.get("response_type") != "code":
            return _redirect(
                redirect_uri,
                state,
                error="unsupported_response_type",
                error_description="response type not supported",
            )
        challenge = params.get("code_challenge") or None
        if challenge is not None and params.get("code_challenge_method", "S256") != "S256":
            return _redirect(
                redirect_uri,
                state,
                error="invalid_request",
                error_description="invalid code challenge method",
            )
        if challenge is None and self.require_pkce:
            return _redirect(
                redirect_uri,
                state,
                error="invalid_request",
                error_description="missing required code challenge",
            )
        if request.method == "GET":
            return _login_page(params, "")
        if params.get("action") == "deny":
            return _redirect(
                redirect_uri, state, error="access_denied", error_description="end-user denied authorization"
            )
        if (params.get("username"), params.get("pw")) != (USERNAME, PASSWORD):
            return _login_page(
                params,
                "Please check your username and password. If you still can't log in, contact your "
                "Salesforce administrator.",
            )
        code = "aPrx" + secrets.token_urlsafe(48) + "=="
        with self._lock:
            now = time.time()
            for old in [c for c, g in self._codes.items() if g.expires < now]:
                del self._codes[old]
            self._codes[code] = _Grant(redirect_uri, challenge, now + CODE_TTL_S)
            self.logins += 1
        return _redirect(redirect_uri, state, code=code)

    # -- POST /services/oauth2/token, grant_type=authorization_code -----------------------------
    def redeem(self, form: Any) -> None:
        """Check an ``authorization_code`` grant and use its code up; raises :class:`OAuthError`."""
        if form.get("client_id") != CLIENT_ID:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        secret = form.get("client_secret")
        if (secret is not None or self.require_secret) and secret != CLIENT_SECRET:
            raise OAuthError("invalid_client", "invalid client credentials")
        with self._lock:
            grant = self._codes.pop(form.get("code") or "", None)  # single use, even when refused
        if grant is None or grant.expires < time.time():
            raise OAuthError("invalid_grant", "invalid authorization code")
        if form.get("redirect_uri") != grant.redirect_uri:
            raise OAuthError("redirect_uri_mismatch", "redirect_uri must match configuration")
        verifier = form.get("code_verifier")
        if grant.challenge is not None and (not verifier or s256(verifier) != grant.challenge):
            raise OAuthError("invalid_grant", "invalid code verifier")


def _redirect(redirect_uri: str, state: str | None, **params: str) -> Response:
    if state is not None:
        params["state"] = state
    return Response(status=302, headers={"Location": f"{redirect_uri}?{urlencode(params)}"})


def _error_page(error: str, description: str) -> Response:
    body = (
        "<!doctype html><title>Error</title><h1>Remote Access Error</h1>"
        f"<p id='error'>error={html.escape(error)}&amp;error_description={html.escape(description)}</p>"
    )
    return Response(body, status=400, content_type="text/html; charset=utf-8")


_FORWARDED = (
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "code_challenge",
    "code_challenge_method",
    "scope",
)


def _login_page(params: Any, message: str) -> Response:
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(params.get(name), quote=True)}">'
        for name in _FORWARDED
        if params.get(name) is not None
    )
    error = f'<p id="error" role="alert">{html.escape(message)}</p>' if message else ""
    body = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Login | Salesforce</title></head><body>"
        "<h1>Salesforce (emulator)</h1>"
        f'{error}<form id="login" method="post" action="/services/oauth2/authorize">{hidden}'
        '<label>Username <input id="username" name="username" type="email"></label>'
        '<label>Password <input id="password" name="pw" type="password"></label>'
        '<button id="Login" name="action" value="allow" type="submit">Log In and Allow</button>'
        '<button id="Deny" name="action" value="deny" type="submit">Deny</button>'
        "</form></body></html>"
    )
    return Response(body, status=200, content_type="text/html; charset=utf-8")
