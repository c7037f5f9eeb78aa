"""The four Salesforce login flows: OAuth refresh token, JWT bearer, client credentials, SOAP.

Each returns an access token and the instance URL. Transient failures are retried by the
session's adapter (see ``client.py``); a refused login raises :class:`SalesforceAuthError`.
"""

from __future__ import annotations

import base64
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import jwt
import requests

from tap_salesforce_groups.errors import SalesforceAuthError
from tap_salesforce_groups.token_store import DEFAULT_REFRESH_TOKEN_FILE, RefreshTokenStore

# SOAP login() exists up to API 64.0 only and is retired for every version on 1 June 2027
# (Salesforce Help 005132110, "Platform SOAP API login() Retirement"): it is always called at
# this version, whatever api_version (the REST version) says.
SOAP_LOGIN_VERSION = "64.0"
SOAP_DEPRECATION = (
    "username/password login uses Salesforce's SOAP login(), which is not available from API 65.0 "
    "and is retired for every API version on 2027-06-01 (Salesforce Help 005132110): switch to "
    "OAuth (tap-salesforce-groups-mapping connect) or the JWT bearer flow"
)
PRODUCTION_AUDIENCE = "https://login.salesforce.com"
SANDBOX_AUDIENCE = "https://test.salesforce.com"


def login_base_url(config: Mapping[str, Any]) -> str:
    """The login host: ``login_url`` if set, else built from ``domain`` (login, test or My Domain)."""
    if config.get("login_url"):
        return str(config["login_url"]).rstrip("/")
    domain = str(config["domain"]).strip()
    if domain.startswith("https://"):
        return domain.rstrip("/")
    if "." in domain:  # a My Domain host such as acme.my.salesforce.com
        return f"https://{domain}"
    return f"https://{domain}.salesforce.com"


# Hosts whose org is a sandbox, for the JWT audience: test.salesforce.com, sandbox My Domains
# (acme--uat.sandbox.my.salesforce.com) and scratch orgs, which Salesforce creates as sandboxes
# (ability-ruby-1234-dev-ed.scratch.my.salesforce.com).
_SANDBOX_SUFFIXES = (".sandbox.my.salesforce.com", ".scratch.my.salesforce.com")


def _host(value: str) -> str:
    value = value.strip().lower()
    return (urlsplit(value).hostname if "://" in value else value.split("/")[0]) or ""


def jwt_audience(config: Mapping[str, Any]) -> str:
    """The JWT ``aud`` claim: login or test, never the My Domain host.

    Salesforce documents ``https://test.salesforce.com`` for sandboxes, including sandbox My
    Domains and scratch orgs; a sandbox answers anything else with ``invalid_grant: audience is
    invalid``. The org is a sandbox when ``domain`` or the ``login_url`` host (which replaces
    ``domain`` as the login host) says so. ``jwt_audience`` overrides the choice (an
    Experience Cloud site's URL, say).
    """
    if config.get("jwt_audience"):
        return str(config["jwt_audience"])
    hosts = {_host(str(config.get("domain") or "login")), _host(str(config.get("login_url") or ""))}
    sandbox = "test" in hosts or any(
        h == "test.salesforce.com" or h.endswith(_SANDBOX_SUFFIXES) for h in hosts
    )
    return SANDBOX_AUDIENCE if sandbox else PRODUCTION_AUDIENCE


# The login flows in the order the tap chooses them (the first complete one), with the settings
# each needs and its name in log lines.
FLOWS: dict[str, tuple[tuple[str, ...], str]] = {
    "refresh_token": (("client_id", "client_secret", "refresh_token"), "OAuth refresh token"),
    "jwt": (("client_id", "private_key", "username"), "JWT bearer"),
    "password": (("username", "password"), "username/password"),
    "client_credentials": (("client_id", "client_secret"), "client credentials"),
}


def complete_flows(config: Mapping[str, Any]) -> list[str]:
    """Every flow whose settings are all set, in the order the tap chooses them."""
    return [flow for flow, (keys, _) in FLOWS.items() if all(config.get(k) for k in keys)]


def auth_flow(config: Mapping[str, Any]) -> str:
    """Which login flow the settings describe: the first complete one; raises when none is."""
    complete = complete_flows(config)
    if complete:
        return complete[0]
    msg = (
        "no complete Salesforce credentials: set client_id + client_secret + refresh_token (OAuth), "
        "client_id + private_key + username (JWT bearer), client_id + client_secret (client "
        "credentials, My Domain), or username + password + security_token"
    )
    raise SalesforceAuthError(msg)


def ignored_credentials(config: Mapping[str, Any]) -> str | None:
    """One line when more than one credential set is complete: which is used, which are not.

    Silent otherwise: client credentials (client_id + client_secret) are part of the refresh
    token set, so a complete refresh token set alone is one set. Names settings, never values.
    """
    complete = complete_flows(config)
    if not complete:
        return None
    used = complete[0]
    used_keys = set(FLOWS[used][0])
    ignored = [f for f in complete[1:] if not set(FLOWS[f][0]) <= used_keys]
    if not ignored:
        return None

    def named(flow: str) -> str:
        keys, name = FLOWS[flow]
        return f"{name} ({' + '.join(keys)})"

    order = ", ".join(name for _, name in FLOWS.values())
    return (
        f"Salesforce credentials: logging in with {named(used)}; also set and not used: "
        f"{'; '.join(named(f) for f in ignored)}. The first complete set in the order {order} is used: "
        "unset the settings of the sets you do not use (refresh_token when moving from connect to JWT bearer)"
    )


def jwt_assertion(config: Mapping[str, Any]) -> str:
    """A signed JWT bearer assertion; a key that is not a usable PEM key is one clear error."""
    claims = {
        "iss": config["client_id"],
        "sub": config["username"],
        "aud": jwt_audience(config),
        "exp": int(time.time()) + 180,
    }
    try:
        return jwt.encode(claims, config["private_key"], algorithm="RS256")
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        msg = "private_key is not a PEM-encoded RSA private key (check the BEGIN/END lines and newlines)"
        raise SalesforceAuthError(msg) from exc


def login(session: requests.Session, config: Mapping[str, Any], flow: str, timeout: float) -> tuple[str, str]:
    """Log in with ``flow``; returns ``(access_token, instance_url)``."""
    base = login_base_url(config)
    if flow == "client_credentials" and _host(base) in ("login.salesforce.com", "test.salesforce.com"):
        # Salesforce answers "request not supported on this domain" there (Help 000886201).
        msg = (
            f"client credentials (client_id + client_secret) work only on the org's My Domain, not {_host(base)}: "
            "set domain to it, e.g. acme.my.salesforce.com (Setup > My Domain)"
        )
        raise SalesforceAuthError(msg)
    if flow == "password":
        return _soap_login(session, base, config, timeout)
    return _oauth_login(session, base, config, flow, timeout)


def _oauth_login(
    session: requests.Session, base: str, config: Mapping[str, Any], flow: str, timeout: float
) -> tuple[str, str]:
    if flow == "refresh_token":
        return _refresh_login(session, base, config, timeout)
    headers: dict[str, str] = {}
    if flow == "jwt":
        data = {
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": jwt_assertion(config),
        }
    else:  # client credentials: Basic auth, as Salesforce documents it
        pair = f"{config['client_id']}:{config['client_secret']}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        data = {"grant_type": "client_credentials"}
    body = _token_request(session, base, flow, data, headers=headers, timeout=timeout)
    return str(body["access_token"]), str(body["instance_url"])


def _refresh_login(
    session: requests.Session, base: str, config: Mapping[str, Any], timeout: float
) -> tuple[str, str]:
    """The refresh token grant, with the latest rotated token in place of the configured one.

    Under refresh token rotation the answer carries a new ``refresh_token`` and the one sent is
    dead (see ``token_store``); the new one is kept before this returns.
    """
    configured = str(config["refresh_token"])
    store = RefreshTokenStore(config.get("refresh_token_file") or DEFAULT_REFRESH_TOKEN_FILE)
    with store.locked():
        kept = store.current(configured)
        data = {
            "grant_type": "refresh_token",
            "client_id": config["client_id"],
            "client_secret": config["client_secret"],
            "refresh_token": kept or configured,
        }
        hint = (
            f" (sent the rotated refresh token kept in {store.path}; if the app revoked it, "
            "connect again and configure the new refresh_token)"
            if kept
            else ""
        )
        body = _token_request(session, base, "refresh_token", data, timeout=timeout, hint=hint)
        rotated = body.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != data["refresh_token"]:
            store.save(configured, rotated)
    return str(body["access_token"]), str(body["instance_url"])


def _token_request(
    session: requests.Session,
    base: str,
    flow: str,
    data: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    timeout: float,
    hint: str = "",
) -> dict[str, Any]:
    """POST to the token endpoint; the JSON answer, or :class:`SalesforceAuthError` naming why."""
    url = f"{base}/services/oauth2/token"
    response = session.post(url, data=data, headers=headers or {}, timeout=timeout)
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if response.status_code != 200 or "access_token" not in body:
        code = body.get("error", f"HTTP {response.status_code}")
        reason = f"{code}: {body.get('error_description', '')}".strip()
        msg = f"Salesforce login ({flow} flow) at {url} failed: {reason}{hint}"
        raise SalesforceAuthError(msg)
    return body


def _soap_login(
    session: requests.Session, base: str, config: Mapping[str, Any], timeout: float
) -> tuple[str, str]:
    secret = escape(str(config["password"]) + str(config.get("security_token") or ""))
    envelope = (
        '<?xml version="1.0" encoding="utf-8" ?>'
        '<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/">'
        '<env:Body><n1:login xmlns:n1="urn:partner.soap.sforce.com">'
        f"<n1:username>{escape(str(config['username']))}</n1:username>"
        f"<n1:password>{secret}</n1:password>"
        "</n1:login></env:Body></env:Envelope>"
    )
    url = f"{base}/services/Soap/u/{SOAP_LOGIN_VERSION}"
    headers = {"content-type": "text/xml", "charset": "UTF-8", "SOAPAction": "login"}
    response = session.post(url, data=envelope.encode(), headers=headers, timeout=timeout)
    return parse_soap_login(response.status_code, response.text, url)


def parse_soap_login(status: int, text: str, url: str) -> tuple[str, str]:
    """``(sessionId, instance URL)`` from a SOAP ``loginResponse``; a fault raises its faultstring."""
    try:
        root = ET.fromstring(text)  # noqa: S314 (response from the configured login host)
    except ET.ParseError as exc:
        msg = f"Salesforce login (password flow) at {url} failed: HTTP {status}"
        raise SalesforceAuthError(msg) from exc
    session_id = root.find(".//{*}sessionId")
    server_url = root.find(".//{*}serverUrl")
    if status != 200 or session_id is None or server_url is None:
        fault = root.find(".//{*}faultstring")
        reason = fault.text if fault is not None else f"HTTP {status}"
        msg = f"Salesforce login (password flow) at {url} failed: {reason}"
        raise SalesforceAuthError(msg)
    parts = urlsplit(str(server_url.text))
    return str(session_id.text), f"https://{parts.netloc.replace('-api', '')}"
