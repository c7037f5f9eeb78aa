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
from .schema import ORG_ID

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

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens)


class Authenticator:
    """Checks credentials for each grant against the package constants and issues sessions."""

    def __init__(self, sessions: Sessions, user_id: str, web_flow: WebServerFlow) -> None:
        self.sessions = sessions
        self.user_id = user_id
        self.web_flow = web_flow
        # Refresh tokens this org honours: the documented one, and each one the web flow issued.
        self.refresh_tokens = {REFRESH_TOKEN}
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
            if form.get("refresh_token") not in self.refresh_tokens:
                raise OAuthError("invalid_grant", "expired access/refresh token")
            scope = "api refresh_token"
        elif grant == "client_credentials":
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
            refresh = f"5Aep861{secrets.token_urlsafe(60)}"
            self.refresh_tokens.add(refresh)
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
