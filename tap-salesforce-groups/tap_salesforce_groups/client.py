"""Salesforce access: login flows, describe, SOQL paging, retries and API-usage accounting.

REST calls go through simple-salesforce; this module adds what it lacks for an unattended
sync: a configurable login URL for every flow, re-login on an expired session whatever the
flow, backoff on transient failures, and a budget on the org's daily API usage.
"""

from __future__ import annotations

import base64
import csv
import io
import logging
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import backoff
import jwt
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceOperationError,
    SalesforceRefusedRequest,
)

from groups_mapping.validate import SALESFORCE_FIELD

T = TypeVar("T")

# "api-usage=USED/MAX", possibly followed by "; api-bursts=…" or "; per-app-api-usage=…".
_API_USAGE = re.compile(r"(?:^|[;,\s])api-usage=(?P<used>\d+)/(?P<max>\d+)")
BULK_PAGE_ROWS = 10000  # rows per Bulk API 2.0 results page: bounds the tap's memory
BULK_POLL_SECONDS = 0.5  # first wait before polling a job; simple-salesforce backs off from there


class SalesforceClientError(Exception):
    """A Salesforce failure the run cannot recover from; the message says what and where."""


class SalesforceAuthError(SalesforceClientError):
    """Login failed (bad or missing credentials, blocked flow)."""


class RequestLimitExceeded(SalesforceClientError):
    """The org's API request limit is exhausted (REQUEST_LIMIT_EXCEEDED)."""


class ApiBudgetReached(SalesforceClientError):
    """The org's daily API usage reached ``max_api_usage_percent``: stop cleanly."""


class QueryCursorExpired(SalesforceClientError):
    """The server forgot a query cursor (INVALID_QUERY_LOCATOR); re-query from the bookmark."""


class _Transient(Exception):
    """A failure worth retrying: 5xx, 406, connection resets, timeouts."""


def login_base_url(config: Mapping[str, Any]) -> str:
    """The login host: ``login_url`` if set, else built from ``domain`` (login, test or My Domain)."""
    if config.get("login_url"):
        return str(config["login_url"]).rstrip("/")
    domain = str(config.get("domain") or "login").strip()
    if domain.startswith("https://"):
        return domain.rstrip("/")
    if "." in domain:  # a My Domain host such as acme.my.salesforce.com
        return f"https://{domain}"
    return f"https://{domain}.salesforce.com"


def auth_flow(config: Mapping[str, Any]) -> str:
    """Which login flow the settings describe; raises when none is complete."""
    has = {
        k
        for k in ("client_id", "client_secret", "refresh_token", "private_key", "username", "password")
        if config.get(k)
    }
    if {"client_id", "client_secret", "refresh_token"} <= has:
        return "refresh_token"
    if {"client_id", "private_key", "username"} <= has:
        return "jwt"
    if {"username", "password"} <= has:
        return "password"
    if {"client_id", "client_secret"} <= has:
        return "client_credentials"
    msg = (
        "no complete Salesforce credentials: set client_id + client_secret + refresh_token (OAuth), "
        "client_id + private_key + username (JWT bearer), client_id + client_secret (client "
        "credentials, My Domain), or username + password + security_token"
    )
    raise SalesforceAuthError(msg)


def _error_text(exc: SalesforceError) -> str:
    """``ERROR_CODE: message`` from a Salesforce error body (a JSON array), else the raw body."""
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        first = content[0]
        return f"{first.get('errorCode', exc.status)}: {first.get('message', '')}".strip()
    if isinstance(content, Mapping):
        return f"{content.get('error', exc.status)}: {content.get('error_description', '')}"
    return f"HTTP {exc.status}: {str(content)[:300]}"


def _error_code(exc: SalesforceError) -> str | None:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        return content[0].get("errorCode")
    return None


class SalesforceClient:
    """One authenticated connection to an org, used by every stream of a run."""

    def __init__(self, config: Mapping[str, Any], logger: logging.Logger | None = None) -> None:
        self.config = config
        self.logger = logger or logging.getLogger(__name__)
        self.flow = auth_flow(config)
        self.api_version = str(config.get("api_version") or "62.0").lstrip("v")
        self.timeout = float(config.get("request_timeout") or 300)
        self.max_retries = int(config.get("max_retries", 5))
        budget = config.get("max_api_usage_percent")
        self.max_usage_percent = float(80 if budget is None else budget)
        # trust_env stays on: REQUESTS_CA_BUNDLE selects the CA, proxies work. verify is never off.
        self.session = requests.Session()
        self.session.hooks["response"].append(self._on_response)
        self._sf: Salesforce | None = None
        self._describes: dict[str, dict[str, Any]] = {}
        self.requests_made = 0
        self.usage: tuple[int, int] | None = None  # the org's daily API usage: (used, max)

    # -- login -----------------------------------------------------------------------------
    @property
    def sf(self) -> Salesforce:
        if self._sf is None:
            self.login()
        assert self._sf is not None
        return self._sf

    def login(self) -> None:
        """Log in with the configured flow and open a REST connection to the instance."""
        base = login_base_url(self.config)
        if self.flow == "password":
            token, instance_url = self._soap_login(base)
        else:
            token, instance_url = self._oauth_login(base)
        instance_url = str(self.config.get("instance_url") or instance_url).rstrip("/")
        if urlsplit(instance_url).scheme != "https":
            msg = f"instance_url must be an https:// URL, got {instance_url!r}"
            raise SalesforceAuthError(msg)
        self._sf = Salesforce(
            instance_url=instance_url,
            session_id=token,
            session=self.session,
            version=self.api_version,
            object_pairs_hook=dict,  # plain dicts: OrderedDict costs time on big pages
        )
        self.logger.info("Logged in to Salesforce (%s flow) at %s", self.flow, instance_url)

    def _oauth_login(self, base: str) -> tuple[str, str]:
        cfg = self.config
        data: dict[str, str] = {}
        headers: dict[str, str] = {}
        if self.flow == "refresh_token":
            data = {
                "grant_type": "refresh_token",
                "client_id": cfg["client_id"],
                "client_secret": cfg["client_secret"],
                "refresh_token": cfg["refresh_token"],
            }
        elif self.flow == "jwt":
            # Salesforce expects login or test as the audience, also for My Domain logins.
            sandbox = cfg.get("domain") == "test"
            audience = "https://test.salesforce.com" if sandbox else "https://login.salesforce.com"
            claims = {
                "iss": cfg["client_id"],
                "sub": cfg["username"],
                "aud": audience,
                "exp": int(time.time()) + 180,
            }
            assertion = jwt.encode(claims, cfg["private_key"], algorithm="RS256")
            data = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
        else:  # client credentials: Basic auth, as Salesforce documents it
            pair = f"{cfg['client_id']}:{cfg['client_secret']}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
            data = {"grant_type": "client_credentials"}
        url = f"{base}/services/oauth2/token"
        response = self._post_login(url, data=data, headers=headers)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or "access_token" not in body:
            code = body.get("error", f"HTTP {response.status_code}")
            reason = f"{code}: {body.get('error_description', '')}"
            msg = f"Salesforce login ({self.flow} flow) at {url} failed: {reason.strip()}"
            raise SalesforceAuthError(msg)
        return body["access_token"], body["instance_url"]

    def _soap_login(self, base: str) -> tuple[str, str]:
        cfg = self.config
        secret = escape(str(cfg["password"]) + str(cfg.get("security_token") or ""))
        envelope = (
            '<?xml version="1.0" encoding="utf-8" ?>'
            '<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/">'
            '<env:Body><n1:login xmlns:n1="urn:partner.soap.sforce.com">'
            f"<n1:username>{escape(str(cfg['username']))}</n1:username>"
            f"<n1:password>{secret}</n1:password>"
            "</n1:login></env:Body></env:Envelope>"
        )
        url = f"{base}/services/Soap/u/{self.api_version}"
        headers = {"content-type": "text/xml", "charset": "UTF-8", "SOAPAction": "login"}
        response = self._post_login(url, data=envelope.encode(), headers=headers)
        try:
            root = ET.fromstring(response.text)  # noqa: S314 (response from the configured login host)
        except ET.ParseError as exc:
            msg = f"Salesforce login (password flow) at {url} failed: HTTP {response.status_code}"
            raise SalesforceAuthError(msg) from exc
        session_id = root.find(".//{*}sessionId")
        server_url = root.find(".//{*}serverUrl")
        if response.status_code != 200 or session_id is None or server_url is None:
            fault = root.find(".//{*}faultstring")
            reason = fault.text if fault is not None else f"HTTP {response.status_code}"
            msg = f"Salesforce login (password flow) at {url} failed: {reason}"
            raise SalesforceAuthError(msg)
        parts = urlsplit(str(server_url.text))
        return str(session_id.text), f"https://{parts.netloc.replace('-api', '')}"

    def _post_login(self, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self._retry(
                lambda: self._raise_transient(self.session.post(url, timeout=self.timeout, **kwargs))
            )
        except requests.RequestException as exc:
            msg = f"cannot reach the Salesforce login host {url}: {exc.__class__.__name__}"
            raise SalesforceAuthError(msg) from exc

    # -- calls -----------------------------------------------------------------------------
    @staticmethod
    def _raise_transient(response: requests.Response) -> requests.Response:
        # A SOAP fault (bad login) also comes as HTTP 500, but it is an answer, not an outage.
        is_fault = "faultcode" in response.text[:2000]
        if (response.status_code >= 500 and not is_fault) or response.status_code == 406:
            raise _Transient(f"HTTP {response.status_code}")
        return response

    def _retry(self, call: Callable[[], T]) -> T:
        """Run ``call`` with exponential backoff and jitter on transient failures."""

        def giveup_log(details: Any) -> None:
            self.logger.warning("Salesforce call failed after %s tries", details["tries"])

        def retry_log(details: Any) -> None:
            self.logger.warning(
                "Transient Salesforce failure (%s); retry %s in %.1fs",
                details["exception"],
                details["tries"],
                details["wait"],
            )

        wrapped = backoff.on_exception(
            backoff.expo,
            (_Transient, requests.ConnectionError, requests.Timeout),
            max_tries=self.max_retries + 1,
            max_value=60,
            logger=None,  # retry_log and giveup_log say it once; no second "Backing off" line
            jitter=backoff.full_jitter,
            on_backoff=retry_log,
            on_giveup=giveup_log,
        )(call)
        return wrapped()

    def _call(self, what: str, fn: Callable[[Salesforce], T]) -> T:
        """One API call: retried when transient, re-logged-in once on an expired session."""

        def attempt() -> T:
            try:
                return fn(self.sf)
            except SalesforceGeneralError as exc:
                if exc.status >= 500 or exc.status == 406:
                    raise _Transient(_error_text(exc)) from exc
                raise

        for relogin in (True, False):
            try:
                result = self._retry(attempt)
            except SalesforceExpiredSession as exc:
                if relogin:
                    self.logger.info("Salesforce session expired; logging in again")
                    self.login()
                    continue
                raise SalesforceClientError(f"{what}: {_error_text(exc)}") from exc
            except _Transient as exc:
                raise SalesforceClientError(f"{what}: gave up after retries: {exc}") from exc
            except requests.RequestException as exc:
                raise SalesforceClientError(
                    f"{what}: gave up after retries: {exc.__class__.__name__}"
                ) from exc
            except SalesforceRefusedRequest as exc:
                if _error_code(exc) == "REQUEST_LIMIT_EXCEEDED":
                    raise RequestLimitExceeded(f"{what}: {_error_text(exc)}") from exc
                raise SalesforceClientError(f"{what}: {_error_text(exc)}") from exc
            except SalesforceError as exc:
                if _error_code(exc) == "INVALID_QUERY_LOCATOR":
                    raise QueryCursorExpired(f"{what}: {_error_text(exc)}") from exc
                raise SalesforceClientError(f"{what}: {_error_text(exc)}") from exc
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Count every request (login, REST, Bulk) and keep the latest ``Sforce-Limit-Info``."""
        self.requests_made += 1
        match = _API_USAGE.search(response.headers.get("Sforce-Limit-Info", ""))
        if match:
            self.usage = (int(match["used"]), int(match["max"]))

    def check_budget(self) -> None:
        """Raise :class:`ApiBudgetReached` once daily usage reaches ``max_api_usage_percent``."""
        if self.usage is None or not self.usage[1]:
            return
        used, total = self.usage
        percent = 100.0 * used / total
        if percent >= self.max_usage_percent:
            msg = (
                f"Salesforce API usage is {used}/{total} ({percent:.1f}%), at or above "
                f"max_api_usage_percent={self.max_usage_percent:g}"
            )
            raise ApiBudgetReached(msg)

    # -- API -------------------------------------------------------------------------------
    def describe(self, object_name: str) -> dict[str, Any]:
        """The object's describe, fetched once per run."""
        if object_name not in self._describes:
            self._describes[object_name] = self._call(
                f"describe {object_name}",
                lambda sf: sf.restful(f"sobjects/{object_name}/describe", timeout=self.timeout),
            )
        return self._describes[object_name]

    def count(self, soql: str, *, include_deleted: bool) -> int:
        """``totalSize`` of a ``SELECT COUNT() …`` query."""
        result = self._call(
            "count", lambda sf: sf.query(soql, include_deleted=include_deleted, timeout=self.timeout)
        )
        return int(result.get("totalSize", 0))

    def bulk_rows(self, object_name: str, soql: str, *, include_deleted: bool) -> Iterator[dict[str, str]]:
        """Rows of a Bulk API 2.0 query job as dicts of CSV text, parsed one at a time."""
        self.sf  # noqa: B018 (log in first, so a login failure is reported as such)
        handler = getattr(self.sf.bulk2, object_name)
        run = handler.query_all if include_deleted else handler.query
        try:
            for text in run(soql, max_records=BULK_PAGE_ROWS, wait=BULK_POLL_SECONDS):
                # csv handles quoted newlines inside values when given the whole page; rows are
                # parsed lazily so that memory holds one page of text, not a page of dicts.
                yield from csv.DictReader(io.StringIO(text))
        except (SalesforceError, SalesforceOperationError) as exc:
            detail = _error_text(exc) if isinstance(exc, SalesforceError) else str(exc)
            raise SalesforceClientError(f"Bulk API 2.0 query on {object_name}: {detail}") from exc
        except requests.RequestException as exc:
            msg = f"Bulk API 2.0 query on {object_name}: {exc.__class__.__name__}"
            raise SalesforceClientError(msg) from exc

    def query_pages(self, soql: str, *, include_deleted: bool) -> Iterator[list[dict[str, Any]]]:
        """Yield each page of records of a SOQL query, following ``nextRecordsUrl``."""
        what = "queryAll" if include_deleted else "query"
        page = self._call(
            what, lambda sf: sf.query(soql, include_deleted=include_deleted, timeout=self.timeout)
        )
        while True:
            yield page.get("records", [])
            next_url = page.get("nextRecordsUrl")
            if page.get("done", True) or not next_url:
                return
            page = self._call(
                f"{what} (next page)",
                lambda sf, url=next_url: sf.query_more(url, identifier_is_url=True, timeout=self.timeout),
            )


def soql_datetime(value: datetime) -> str:
    """A SOQL datetime literal in UTC with milliseconds, e.g. ``2025-01-31T10:00:00.000Z``."""
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def build_soql(
    object_name: str,
    fields: Iterable[str],
    *,
    replication_key: str | None = None,
    start: datetime | None = None,
    limit: int | None = None,
    count: bool = False,
) -> str:
    """``SELECT … FROM … [WHERE key >= start] [ORDER BY key, Id] [LIMIT n]`` from checked names only.

    ``>=`` (not ``>``) because many rows can share one timestamp: an interrupted run must see
    the rest of them again; the stream skips the ones it already emitted. ``count`` asks for
    ``COUNT()`` of the same rows instead.
    """
    fields = list(fields)
    names = [object_name, *fields, *([replication_key] if replication_key else [])]
    bad = [n for n in names if not SALESFORCE_FIELD.match(n)]
    if bad:  # the mapping validator already refuses these; never splice unchecked text into SOQL
        raise SalesforceClientError(f"refusing to query invalid Salesforce names: {', '.join(bad)}")
    selected = "COUNT()" if count else ", ".join(fields)
    soql = f"SELECT {selected} FROM {object_name}"  # noqa: S608 (names checked above)
    if replication_key and start is not None:
        soql += f" WHERE {replication_key} >= {soql_datetime(start)}"
    if count:
        return soql
    if replication_key:
        soql += f" ORDER BY {replication_key} ASC, Id ASC"
    if limit is not None:
        soql += f" LIMIT {int(limit)}"
    return soql
