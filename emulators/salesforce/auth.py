"""Login: the OAuth token endpoint (four grants), SOAP ``login()``, and the sessions they issue."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.wrappers import Request

from .credentials import (
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    REFRESH_TOKEN,
    SECURITY_TOKEN,
    USERNAME,
)
from .schema import ORG_ID, SOAP_LOGIN_LAST_VERSION

if TYPE_CHECKING:
    from .webflow import WebServerFlow

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Salesforce wants a JWT assertion to expire within 3 minutes; allow some clock skew on top.
JWT_MAX_LIFETIME_S = 300
# JWT audiences Salesforce accepts besides the login host itself.
_AUDIENCE_HOSTS = ("login.salesforce.com", "test.salesforce.com")


class OAuthError(Exception):
    """A 400 from the token endpoint: ``{"error": ..., "error_description": ...}``."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


class Sessions:
    """The access tokens this org issued; expiring them all forces every client to log in again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: set[str] = set()

    def issue(self) -> str:
        token = f"{ORG_ID[:15]}!AQ{secrets.token_urlsafe(72)}"
        with self._lock:
            self._tokens.add(token)
        return token

    def valid(self, token: str) -> bool:
        with self._lock:
            return token in self._tokens

    def expire_all(self) -> int:
        with self._lock:
            count = len(self._tokens)
            self._tokens.clear()
            return count

    def revoke(self, tokens: set[str]) -> None:
        """Invalidate these access tokens (a revoked refresh token takes its sessions with it)."""
        with self._lock:
            self._tokens -= tokens

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens)


class RefreshTokens:
    """The org's refresh tokens, each of a family that one authorization started.

    With ``rotate`` on (the connected app's "Enable Refresh Token Rotation"), each refresh
    returns a new refresh token and invalidates the one used; reusing an invalidated one
    revokes the family's current refresh token and every access token it issued. Salesforce
    Help 005316711, "Force one-time-use Refresh Tokens - (RTR) Refresh Token Rotation": "This
    setting enforces single-use refresh tokens by issuing a new token with each exchange and
    immediately invalidating the previous one. [...] any attempted reuse of an invalidated
    refresh token results in the immediate revocation of the current refresh token and all
    associated access tokens, requiring the client to re-authenticate via a new flow."
    """

    def __init__(self, sessions: Sessions) -> None:
        self._lock = threading.Lock()
        self._sessions = sessions
        self.rotate = False
        self.rotations = 0  # refreshes that returned a new token
        self.revocations = 0  # families revoked because an invalidated token was reused
        self._current: dict[str, int] = {}  # valid refresh token -> family
        self._used: dict[str, int] = {}  # invalidated (rotated-away) refresh token -> family
        self._family_sessions: dict[int, set[str]] = {}
        self.reset()

    def reset(self) -> None:
        """Only the configured ``REFRESH_TOKEN`` is valid again; rotation stays as it was set."""
        with self._lock:
            self._current = {REFRESH_TOKEN: 0}
            self._used = {}
            self._family_sessions = {0: set()}
            self.rotations = self.revocations = 0

    def issue(self) -> str:
        """A refresh token of a new family, as a fresh authorization (a new "Connect") gives."""
        token = f"5Aep861{secrets.token_urlsafe(60)}"
        with self._lock:
            family = max(self._family_sessions, default=-1) + 1
            self._current[token] = family
            self._family_sessions[family] = set()
        return token

    def valid(self, token: str) -> bool:
        with self._lock:
            return token in self._current

    def revoke(self, token: str) -> None:
        """Revoke one refresh token, as an admin does under Setup > Connected Apps OAuth Usage."""
        with self._lock:
            self._current.pop(token, None)

    def revoke_family_of(self, token: str) -> None:
        """Revoke every refresh token descended from ``token`` (rotated ones included)."""
        with self._lock:
            family = self._current.get(token, self._used.get(token))
            self._current = {t: f for t, f in self._current.items() if f != family}

    def refresh(self, token: str | None) -> tuple[int, str | None]:
        """Accept ``token``: its family and, when rotating, the refresh token that replaces it."""
        with self._lock:
            if token in self._used:  # reuse of an invalidated token: revoke the whole family
                family = self._used[token]
                self._current = {t: f for t, f in self._current.items() if f != family}
                self._sessions.revoke(self._family_sessions.get(family, set()))
                self._family_sessions[family] = set()
                self.revocations += 1
                raise OAuthError("invalid_grant", "expired access/refresh token")
            if token is None or token not in self._current:
                raise OAuthError("invalid_grant", "expired access/refresh token")
            family = self._current[token]
            if not self.rotate:
                return family, None
            new = f"5Aep861{secrets.token_urlsafe(60)}"
            del self._current[token]
            self._used[token] = family
            self._current[new] = family
            self.rotations += 1
            return family, new

    def bind(self, family: int, access_token: str) -> None:
        """Record that ``access_token`` was issued from ``family`` (revoked with it)."""
        with self._lock:
            self._family_sessions.setdefault(family, set()).add(access_token)


class Authenticator:
    """Checks credentials for each grant against the package constants and issues sessions."""

    def __init__(self, sessions: Sessions, user_id: str, web_flow: WebServerFlow) -> None:
        self.sessions = sessions
        self.refresh_tokens = RefreshTokens(sessions)
        self.user_id = user_id
        self.web_flow = web_flow
        self.sandbox = False  # a sandbox accepts only the https://test.salesforce.com audience
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwt_public_key = key.public_key()
        self.jwt_private_key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self.jwt_public_key_pem = self.jwt_public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    # -- OAuth ----------------------------------------------------------------------------------
    def token(self, request: Request, instance_url: str) -> dict[str, Any]:
        """Handle ``POST /services/oauth2/token``; raises ``OAuthError`` like Salesforce."""
        form = request.form
        grant = form.get("grant_type")
        if not grant:
            raise OAuthError("invalid_request", "grant type is missing")
        if grant == "refresh_token":
            self._client(form.get("client_id"), form.get("client_secret"))
            family, rotated = self.refresh_tokens.refresh(form.get("refresh_token"))
            response = self._token_response(instance_url, "api refresh_token")
            self.refresh_tokens.bind(family, response["access_token"])
            if rotated is not None:
                response["refresh_token"] = rotated
            return response
        if grant == "client_credentials":
            client_id, secret = _basic_auth(request)
            if client_id is None:
                client_id, secret = form.get("client_id"), form.get("client_secret")
            self._client(client_id, secret)
            scope = "api"
        elif grant == JWT_GRANT:
            self._jwt(form.get("assertion"), request.host)
            scope = "api"
        elif grant == "authorization_code":
            self.web_flow.redeem(form)
            refresh = self.refresh_tokens.issue()  # a new authorization: a new token family
            return {**self._token_response(instance_url, "refresh_token id api"), "refresh_token": refresh}
        else:  # includes "password", which the tap never sends
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        return self._token_response(instance_url, scope)

    @staticmethod
    def _client(client_id: str | None, secret: str | None) -> None:
        if client_id != CLIENT_ID:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if secret != CLIENT_SECRET:
            raise OAuthError("invalid_client", "invalid client credentials")

    def _jwt(self, assertion: str | None, host: str) -> None:
        if not assertion:
            raise OAuthError("invalid_request", "assertion missing")
        try:
            claims = jwt.decode(
                assertion,
                self.jwt_public_key,
                algorithms=["RS256"],
                options={"require": ["iss", "sub", "aud", "exp"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise OAuthError("invalid_grant", "expired authorization code") from None
        except jwt.PyJWTError:
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if claims["iss"] != CLIENT_ID:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        hosts = {urlsplit(str(a)).netloc.lower() for a in audiences}
        allowed = {"test.salesforce.com"} if self.sandbox else {host.lower(), *_AUDIENCE_HOSTS}
        if not hosts & allowed:
            raise OAuthError("invalid_grant", "audience is invalid")
        # simple-salesforce sends exp as a string of digits; PyJWT has already checked it parses.
        if int(claims["exp"]) > time.time() + JWT_MAX_LIFETIME_S:
            raise OAuthError("invalid_grant", "invalid assertion")
        if claims["sub"] != USERNAME:
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")

    def _token_response(self, instance_url: str, scope: str) -> dict[str, Any]:
        identity = f"{instance_url}/id/{ORG_ID}/{self.user_id}"
        issued_at = str(int(time.time() * 1000))
        digest = hmac.new(CLIENT_SECRET.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
        # Salesforce omits expires_in, and sends refresh_token only when rotating it.
        return {
            "access_token": self.sessions.issue(),
            "instance_url": instance_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": base64.b64encode(digest).decode(),
            "scope": scope,
        }

    # -- SOAP login -----------------------------------------------------------------------------
    def soap_login(self, body: str, instance_url: str, version: str) -> tuple[int, str]:
        """Handle SOAP ``login()``: (status, XML) with a session or an INVALID_LOGIN fault."""
        if float(version) > SOAP_LOGIN_LAST_VERSION:
            # Salesforce documents that login() is unavailable from 65.0 (Help 005132110), not
            # the fault it answers; this one names the cause the same way its faults do.
            return 500, _SOAP_FAULT_VERSION.format(version=html.escape(version))
        username = _xml_text(body, "username")
        password = _xml_text(body, "password")
        if (username, password) != (USERNAME, PASSWORD + SECURITY_TOKEN):
            return 500, _SOAP_FAULT
        session = self.sessions.issue()
        server = f"{instance_url}/services/Soap/u/{version}/{ORG_ID[:15]}"
        return 200, _SOAP_LOGIN.format(
            metadata=html.escape(f"{instance_url}/services/Soap/m/{version}/{ORG_ID[:15]}"),
            server=html.escape(server),
            session=html.escape(session),
            user=self.user_id,
            org=ORG_ID,
            username=html.escape(USERNAME),
        )


def _basic_auth(request: Request) -> tuple[str | None, str | None]:
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return None, None
    return auth.username, auth.password


def _xml_text(body: str, tag: str) -> str | None:
    m = re.search(rf"<(?:[\w-]+:)?{tag}\b[^>]*>(.*?)</(?:[\w-]+:)?{tag}>", body, re.DOTALL)
    return html.unescape(m.group(1)) if m else None


_SOAP_LOGIN = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns="urn:partner.soap.sforce.com" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    "<soapenv:Body><loginResponse><result>"
    "<metadataServerUrl>{metadata}</metadataServerUrl>"
    "<passwordExpired>false</passwordExpired>"
    "<sandbox>false</sandbox>"
    "<serverUrl>{server}</serverUrl>"
    "<sessionId>{session}</sessionId>"
    "<userId>{user}</userId>"
    "<userInfo><organizationId>{org}</organizationId><userId>{user}</userId>"
    "<userName>{username}</userName></userInfo>"
    "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
)

_SOAP_FAULT = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:sf="urn:fault.partner.soap.sforce.com" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    "<soapenv:Body><soapenv:Fault>"
    "<faultcode>sf:INVALID_LOGIN</faultcode>"
    "<faultstring>INVALID_LOGIN: Invalid username, password, security token; or user locked "
    "out.</faultstring>"
    '<detail><sf:LoginFault xsi:type="sf:LoginFault">'
    "<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>"
    "<sf:exceptionMessage>Invalid username, password, security token; or user locked out."
    "</sf:exceptionMessage></sf:LoginFault></detail>"
    "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
)

_SOAP_FAULT_VERSION = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:sf="urn:fault.partner.soap.sforce.com">'
    "<soapenv:Body><soapenv:Fault>"
    "<faultcode>sf:UNSUPPORTED_API_VERSION</faultcode>"
    "<faultstring>UNSUPPORTED_API_VERSION: login() is not available in API version {version}; "
    "use OAuth</faultstring>"
    "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
)
