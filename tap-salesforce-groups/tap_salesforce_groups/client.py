"""Salesforce data access: one session, one retry policy, re-login, and the API budget.

Every call (login, describe, REST query, each Bulk API 2.0 create, poll, results and
delete) goes through one ``requests`` session shared with simple-salesforce. Its adapter's
urllib3 :class:`Retry` retries transient failures (5xx, 406, resets, timeouts) with capped
exponential backoff; :meth:`SalesforceClient.call` logs in again on ``INVALID_SESSION_ID``
and turns Salesforce's error codes into the exceptions in ``errors.py``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError, SalesforceExpiredSession
from simple_salesforce.util import exception_handler
from urllib3.exceptions import NameResolutionError, NewConnectionError
from urllib3.util.retry import Retry

from tap_salesforce_groups.auth import SOAP_DEPRECATION, auth_flow, ignored_credentials, login
from tap_salesforce_groups.errors import (
    ApiBudgetReached,
    BulkNotSupported,
    QueryCursorExpired,
    QueryTooBig,
    RequestLimitExceeded,
    SalesforceAuthError,
    SalesforceClientError,
)
from tap_salesforce_groups.prefetch import prefetch

T = TypeVar("T")

# "api-usage=USED/MAX", possibly followed by "; api-bursts=…" or "; per-app-api-usage=…".
_API_USAGE = re.compile(r"(?:^|[;,\s])api-usage=(?P<used>\d+)/(?P<max>\d+)")
PAGE_CHUNK_BYTES = 64 * 1024  # a REST page is read in chunks this size: the first holds its head
BULK_PAGE_ROWS = 10000  # rows per Bulk API 2.0 results page: bounds the tap's memory
BULK_POLL_SECONDS = (0.5, 10.0)  # first and longest wait between polls of a Bulk job
ABORT_SECONDS = 5.0  # timeout of each request that aborts and deletes a job when the run stops
TRANSIENT_STATUS = (406, 500, 502, 503, 504)  # 406: a Salesforce edge answer that passes on retry
# REQUEST_LIMIT_EXCEEDED also means "too many requests at once", which passes: ConcurrentRequests
# and ConcurrentPerOrgLongTxn (25 long-running requests per org; SalesforceLabs/OrgCheck#432,
# mautic/mautic#5006; salesforcecli/cli PR #2180 retries them). TotalRequests is the daily limit.
CONCURRENCY_LIMITS = ("ConcurrentPerOrgLongTxn", "ConcurrentRequests", "concurrent")
# A failed Bulk job is worth reading again in smaller windows only when it ran out of time or
# retries (airbyte source-salesforce wait_for_job; singer-io tap-salesforce's Bulk 1.0 retries
# on "QUERY_TIMEOUT", "Retried more" and "Failed to write query result"). Anything else
# (INVALID_FIELD, a binary field, …) fails again however small the window.
RETRYABLE_JOB_ERRORS = ("QUERY_TIMEOUT", "Retried more than", "Failed to write query result", "timed out")


# The head of a REST query page: Salesforce writes totalSize, done and nextRecordsUrl before the
# records (REST API Developer Guide, "Execute a SOQL Query", example response; the reference's §6).
_RECORDS_KEY = re.compile(rb'"records"\s*:')
_DONE = re.compile(rb'"done"\s*:\s*(true|false)')
_NEXT_URL = re.compile(rb'"nextRecordsUrl"\s*:\s*"([^"\\]+)"')


class QueryPage:
    """One page of a REST query as it arrives; the rest of it is read and parsed on first use.

    ``done`` and ``next_url`` are read from the head of the body, so the next page can be
    asked for while this one still downloads, and ``records`` reads and parses the rest in
    the thread that reads the records. A body laid out otherwise (records first, an escaped
    URL) is read and parsed at once.
    """

    def __init__(self, chunks: Iterable[bytes], what: str = "query") -> None:
        self._what = what
        self._chunks: Iterator[bytes] = iter(chunks)
        self._head = b""
        self._records: list[dict[str, Any]] | None = None
        records_key = None
        for chunk in self._chunks:  # up to the records: a few hundred bytes
            self._head += chunk
            records_key = _RECORDS_KEY.search(self._head)
            if records_key is not None:
                break
        head = self._head[: records_key.start()] if records_key is not None else b""
        done, next_url = _DONE.search(head), _NEXT_URL.search(head)
        if done is not None and (done[1] == b"true" or next_url is not None):
            self.done: bool = done[1] == b"true"
            self.next_url: str | None = next_url[1].decode() if next_url is not None else None
            return
        parsed = json.loads(self._read())
        self.done, self.next_url = bool(parsed.get("done", True)), parsed.get("nextRecordsUrl")
        self._records = list(parsed.get("records") or [])

    def _read(self) -> bytes:
        try:
            body = self._head + b"".join(self._chunks)
        except requests.RequestException as exc:
            raise SalesforceClientError(f"{self._what}: {connection_problem(exc)}") from exc
        self._head = b""  # held once, not twice
        return body

    @property
    def records(self) -> list[dict[str, Any]]:
        """The page's records (read and parsed once)."""
        if self._records is None:
            self._records = list(json.loads(self._read()).get("records") or [])
        return self._records


class SalesforceRetry(Retry):
    """urllib3's Retry, told apart for Salesforce.

    A refused connection or an unknown host fails at once (retrying cannot fix a wrong
    address), a ``Retry-After`` is capped at ``backoff_max``, and each status retry is logged.
    """

    logger = logging.getLogger("tap-salesforce-groups")  # the tap's logger, set up by the SDK

    def get_retry_after(self, response: Any) -> float | None:
        """Salesforce's Retry-After, capped at ``backoff_max``."""
        after = super().get_retry_after(response)
        if after is not None and after > self.backoff_max:
            self.logger.warning("Retry-After %.0fs capped at max_backoff %.0fs", after, self.backoff_max)
            return self.backoff_max
        return after

    def increment(  # type: ignore[override]
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> Retry:
        """The next retry state; refused connections and SOAP faults are not retried."""
        refused = isinstance(error, NewConnectionError) and "timed out" not in str(error)
        # A SOAP login fault (bad password) comes as HTTP 500: an answer, not an outage.
        soap_fault = response is not None and "/services/Soap/" in (url or "")
        if refused or soap_fault:
            exhausted = self.new(total=0)  # raises MaxRetryError at once: the caller sees this answer
            return Retry.increment(exhausted, method, url, response, error, _pool, _stacktrace)
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if response is not None:
            self.logger.warning(
                "Salesforce answered HTTP %s to %s %s; retry %d of %s",
                response.status,
                method,
                (url or "").split("?")[0],
                len(retry.history),
                self.total,
            )
        return retry


def make_session(max_retries: int, max_backoff: float) -> requests.Session:
    """A session that retries transient failures of any method (Bulk creates are POSTs)."""
    retry = SalesforceRetry(
        total=max_retries,
        connect=max_retries,
        read=max_retries,
        status=max_retries,
        other=0,  # TLS and protocol errors: retrying cannot fix them
        allowed_methods=None,
        status_forcelist=TRANSIENT_STATUS,
        backoff_factor=0.5,
        backoff_max=max_backoff,
        backoff_jitter=0.25,
        raise_on_status=False,  # the last answer reaches the caller, which names the error
    )
    session = requests.Session()  # trust_env stays on: REQUESTS_CA_BUNDLE selects the CA
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def connection_problem(exc: requests.RequestException) -> str:
    """One line naming why a host could not be reached: TLS, DNS, refused, or a timeout."""
    host = urlsplit(exc.request.url if exc.request is not None and exc.request.url else "").netloc
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return (
            f"TLS certificate verification failed for {host}; if it uses a private CA, point "
            "REQUESTS_CA_BUNDLE at that CA's PEM file"
        )
    reason: Any = exc.args[0] if exc.args else None
    cause = getattr(reason, "reason", reason)
    if isinstance(cause, NameResolutionError) or "Name or service not known" in text:
        return f"cannot resolve host {host} (DNS lookup failed)"
    if isinstance(cause, NewConnectionError) and "refused" in text.lower():
        return f"connection refused by {host}"
    if isinstance(exc, requests.Timeout):
        return f"no answer from {host} within request_timeout (gave up after retries)"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):  # an answer cut short
        # urllib3's ProtocolError("Connection broken: IncompleteRead(…)", …) inside, usually.
        inner = reason.args[0] if isinstance(reason, Exception) and reason.args else reason
        detail = " ".join(str(inner if inner is not None else text).split())
        return f"the connection to {host or 'Salesforce'} broke while an answer downloaded ({detail})"
    return f"cannot reach {host}: {exc.__class__.__name__} (gave up after retries)"


def _query_headers(sf: Salesforce) -> dict[str, str]:
    """A REST query's headers: simple-salesforce's, without X-PrettyPrint.

    Pretty printing indents the body: more bytes to send and parse for nobody to read.
    """
    return {k: v for k, v in sf.headers.items() if k != "X-PrettyPrint"}


def error_code(exc: SalesforceError) -> str | None:
    """The ``errorCode`` of a Salesforce error body (a JSON array of errors)."""
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        code = content[0].get("errorCode")
        return str(code) if code is not None else None
    return None


def error_text(exc: SalesforceError) -> str:
    """``ERROR_CODE: message`` from a Salesforce error body, else the start of the raw body."""
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        first = content[0]
        return f"{first.get('errorCode', exc.status)}: {first.get('message', '')}".strip()
    if isinstance(content, Mapping):
        return f"{content.get('error', exc.status)}: {content.get('error_description', '')}"
    return f"HTTP {exc.status}: {str(content)[:300]}"


def csv_lines(content: bytes) -> io.TextIOWrapper:
    """A Bulk CSV page as lines for ``csv``.

    Decoded as it is read (the page is held once, as bytes), with newline="" so that newlines inside quoted
    values stay in their values.
    """
    return io.TextIOWrapper(io.BytesIO(content), encoding="utf-8", errors="replace", newline="")


class SalesforceClient:
    """One authenticated connection to an org, used by every stream of a run."""

    def __init__(self, config: Mapping[str, Any], logger: logging.Logger | None = None) -> None:
        self.config = config
        self.logger = logger or logging.getLogger(__name__)
        self.flow = auth_flow(config)
        self.api_version = str(config["api_version"])
        self.timeout = float(config["request_timeout"])
        self.max_retries = int(config["max_retries"])
        self.max_backoff = float(config["max_backoff"])
        self.max_usage_percent = float(config["max_api_usage_percent"])
        self.session = make_session(self.max_retries, float(config["max_backoff"]))
        self.session.hooks["response"].append(self._on_response)
        self._sf: Salesforce | None = None
        self._describes: dict[str, dict[str, Any]] = {}
        self.requests_made = 0
        self.bulk_job_id: str | None = None  # the Bulk API 2.0 job being read
        # Set when the run stops (a signal): waits between Bulk polls end at once.
        self.stopping = threading.Event()
        self.usage: tuple[int, int] | None = None  # the org's daily API usage: (used, max)
        self.clock_offset = timedelta(0)  # Salesforce's clock minus ours, from the Date header
        self._warned_soap = False
        self._warned_credentials = False

    # -- login and the call policy -----------------------------------------------------------
    @property
    def sf(self) -> Salesforce:
        """The simple-salesforce connection, logging in on first use."""
        if self._sf is None:
            self.login()
        assert self._sf is not None
        return self._sf

    def login(self) -> None:
        """Log in with the configured flow and open a REST connection to the instance."""
        if not self._warned_credentials:
            self._warned_credentials = True
            if (several := ignored_credentials(self.config)) is not None:
                self.logger.warning(several)
        if self.flow == "password" and not self._warned_soap:
            self._warned_soap = True
            self.logger.warning(SOAP_DEPRECATION)
        try:
            token, instance_url = login(self.session, self.config, self.flow, self.timeout)
        except requests.RequestException as exc:
            raise SalesforceAuthError(f"Salesforce login: {connection_problem(exc)}") from exc
        instance_url = str(self.config.get("instance_url") or instance_url).rstrip("/")
        self._sf = Salesforce(
            instance_url=instance_url,
            session_id=token,
            session=self.session,
            version=self.api_version,
            object_pairs_hook=dict,  # plain dicts: OrderedDict costs time on big pages
        )
        self.logger.info("Logged in to Salesforce (%s flow) at %s", self.flow, instance_url)

    def rest_request_bytes(self, soql: str, *, include_deleted: bool = True) -> int:
        """Bytes of a REST query's request that Salesforce counts against its 16,384-byte limit.

        The URI plus every request header (Salesforce Developer Limits and Allocations Quick Reference, "API
        Request Limits"; past it the answer is 431, airbytehq/airbyte#20703).

        Measured on the request this client sends (the session's headers and the query's
        headers, the session id included), not estimated.
        """
        sf = self.sf
        url = sf.base_url + ("queryAll/" if include_deleted else "query/")
        request = requests.Request("GET", url, headers=_query_headers(sf), params={"q": soql})
        prepared = self.session.prepare_request(request)
        lines = [f"Host: {urlsplit(url).netloc}", *(f"{k}: {v}" for k, v in prepared.headers.items())]
        return len(str(prepared.path_url).encode()) + sum(len(line.encode()) + 2 for line in lines)

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one Salesforce call.

        Log in again once on an expired session, wait and retry when the org has too many requests running at
        once, name any other failure.

        Transient HTTP failures were already retried by the session; what reaches here is final.
        """
        relogged, busy = False, 0
        while True:
            try:
                return fn()
            except SalesforceExpiredSession as exc:
                if relogged:
                    raise SalesforceClientError(f"{what}: {error_text(exc)}") from exc
                relogged = True
                self.logger.info("Salesforce session expired; logging in again")
                self.login()
            except SalesforceError as exc:
                if not self._concurrency_limited(exc) or busy >= self.max_retries:
                    raise self._classify(what, exc) from exc
                busy += 1
                wait = min(self.max_backoff, 0.5 * 2**busy) * (0.75 + random.random() / 2)
                self.logger.warning(
                    "%s: %s (too many requests at once); retry %d of %d in %.1fs",
                    what,
                    error_text(exc),
                    busy,
                    self.max_retries,
                    wait,
                )
                time.sleep(wait)
            except requests.RequestException as exc:
                raise SalesforceClientError(f"{what}: {connection_problem(exc)}") from exc

    @staticmethod
    def _concurrency_limited(exc: SalesforceError) -> bool:
        """REQUEST_LIMIT_EXCEEDED that means concurrent requests, not the daily total."""
        if error_code(exc) != "REQUEST_LIMIT_EXCEEDED":
            return False
        text = error_text(exc)
        return any(flavour.lower() in text.lower() for flavour in CONCURRENCY_LIMITS)

    def _classify(self, what: str, exc: SalesforceError) -> SalesforceClientError:
        code, text = error_code(exc), error_text(exc)
        if code == "REQUEST_LIMIT_EXCEEDED":
            return RequestLimitExceeded(f"{what}: {text}")
        if code == "QUERY_TIMEOUT":
            return QueryTooBig(f"{what}: {text}")
        if code == "INVALID_QUERY_LOCATOR":
            return QueryCursorExpired(f"{what}: {text}")
        if code == "INVALIDENTITY" and "not supported by the Bulk API" in text:
            return BulkNotSupported(f"{what}: {text}")
        if exc.status in TRANSIENT_STATUS:
            return SalesforceClientError(f"{what}: gave up after {self.max_retries} retries: {text}")
        return SalesforceClientError(f"{what}: {text}")

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Count every request (login, REST, Bulk) and keep the latest ``Sforce-Limit-Info``."""
        self.requests_made += 1
        match = _API_USAGE.search(response.headers.get("Sforce-Limit-Info", ""))
        if match:
            self.usage = (int(match["used"]), int(match["max"]))
        date = response.headers.get("Date")
        if date:
            try:
                server = parsedate_to_datetime(date)
            except (TypeError, ValueError):
                return
            if server.tzinfo is not None:
                # Date has whole seconds, rounded down: server_now() errs early, the safe side.
                self.clock_offset = server - datetime.now(timezone.utc)

    def server_now(self) -> datetime:
        """Salesforce's time now, by the Date header of its latest answer (ours before any).

        Windows end by the server's clock, never ours: with our clock ahead, a closed window
        would commit past rows Salesforce stamps later with an earlier time.
        """
        return datetime.now(timezone.utc) + self.clock_offset

    def usage_line(self) -> str:
        """Requests made so far and the org's daily usage, for the log."""
        usage = f"; org daily usage {self.usage[0]}/{self.usage[1]}" if self.usage else ""
        return f"Salesforce requests this run so far: {self.requests_made}{usage}"

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

    # -- REST --------------------------------------------------------------------------------
    def describe(self, object_name: str) -> dict[str, Any]:
        """The object's describe, fetched once per run."""
        if object_name not in self._describes:
            path = f"sobjects/{object_name}/describe"
            self._describes[object_name] = self.call(
                f"describe {object_name}", lambda: dict(self.sf.restful(path, timeout=self.timeout) or {})
            )
        return self._describes[object_name]

    def count(self, soql: str, *, include_deleted: bool) -> int:
        """``totalSize`` of a ``SELECT COUNT() …`` query."""
        result = self.call(
            "count", lambda: self.sf.query(soql, include_deleted=include_deleted, timeout=self.timeout)
        )
        return int(result.get("totalSize", 0))

    def query_pages(self, soql: str, *, include_deleted: bool) -> Iterator[list[dict[str, Any]]]:
        """Yield each page of records of a SOQL query, following ``nextRecordsUrl``."""
        for page in self.query_bodies(soql, include_deleted=include_deleted):
            yield page.records

    def query_bodies(self, soql: str, *, include_deleted: bool) -> Iterator[QueryPage]:
        """Yield each page of a SOQL query as it arrives (:class:`QueryPage`), following ``nextRecordsUrl``.

        Under :func:`prefetch`, the next page is asked for as soon as this one's head has
        arrived; the reader downloads and parses the rest of this one meanwhile.
        """
        what = "queryAll" if include_deleted else "query"
        page = self.call(what, self._query_page(what, None, {"q": soql}, include_deleted))
        while True:
            yield page
            self.check_budget()
            if page.done or not page.next_url:
                return
            page = self.call(
                f"{what} (next page)", self._query_page(what, page.next_url, None, include_deleted)
            )

    def _query_page(
        self, what: str, next_url: str | None, params: dict[str, str] | None, include_deleted: bool
    ) -> Callable[[], QueryPage]:
        """One request for a page, as simple-salesforce's ``query`` and ``query_more`` send it."""

        def send() -> QueryPage:
            sf = self.sf  # read on each attempt: a re-login replaces the session id
            if next_url is None:
                url = sf.base_url + ("queryAll/" if include_deleted else "query/")
            else:
                url = f"https://{sf.sf_instance}{next_url}"
            response = self.session.get(
                url, headers=_query_headers(sf), params=params, timeout=self.timeout, stream=True
            )
            if response.status_code >= 300:
                exception_handler(response, what)
            return QueryPage(response.iter_content(PAGE_CHUNK_BYTES), what)

        return send

    # -- Bulk API 2.0 ------------------------------------------------------------------------
    def _bulk(self, method: str, path: str, what: str, **kwargs: Any) -> requests.Response:
        """One Bulk API 2.0 request through the shared session and :meth:`call`."""

        def send() -> requests.Response:
            sf = self.sf  # read on each attempt: a re-login replaces the session id
            url = f"{sf.base_url}jobs/query{path}"
            headers = {"Authorization": f"Bearer {sf.session_id}"}
            response = self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
            if response.status_code >= 300:
                exception_handler(response, what)
            return response

        return self.call(what, send)

    def bulk_rows(self, object_name: str, soql: str, *, include_deleted: bool) -> Iterator[dict[str, str]]:
        """Rows of a Bulk API 2.0 query job as dicts of CSV text; the job is deleted afterwards."""
        for content in self.bulk_pages(object_name, soql, include_deleted=include_deleted):
            yield from csv.DictReader(csv_lines(content))

    def bulk_pages(
        self,
        object_name: str,
        soql: str,
        *,
        include_deleted: bool,
        job_info: MutableMapping[str, Any] | None = None,
    ) -> Iterator[bytes]:
        """The CSV result pages (UTF-8 bytes) of a Bulk API 2.0 query job.

        Each page downloads while the one before it is read; the job is deleted afterwards.
        ``job_info`` receives the job as created (its server-side ``createdDate``) before the
        first page comes.
        """
        pages = self._bulk_pages(object_name, soql, include_deleted, job_info)
        # A consumer that stops waits long enough for a running job to be aborted and deleted.
        return prefetch(pages, name=f"{object_name}-bulk", join_seconds=2 * ABORT_SECONDS + 2)

    def _bulk_pages(
        self, object_name: str, soql: str, include_deleted: bool, job_info: MutableMapping[str, Any] | None
    ) -> Iterator[bytes]:
        what = f"Bulk API 2.0 query on {object_name}"
        body = {"operation": "queryAll" if include_deleted else "query", "query": soql}
        job = self._bulk("POST", "", f"{what} (create)", json=body).json()
        if job_info is not None:
            job_info.update(job)
        job_id = str(job["id"])
        self.bulk_job_id = job_id  # named by errors about its results
        finished = False
        try:
            self._wait_for(job_id, what)
            finished = True
            locator = ""
            while locator != "null":
                params = {"maxRecords": BULK_PAGE_ROWS, **({"locator": locator} if locator else {})}
                page = self._bulk("GET", f"/{job_id}/results", f"{what} (results)", params=params)
                locator = page.headers.get("Sforce-Locator") or "null"
                yield page.content
                self.check_budget()  # before the next page is asked for
        except QueryTooBig:
            finished = True  # Failed: nothing left to abort
            raise
        finally:
            if finished:
                self._delete_job(job_id, what)
            else:  # stopped while the job runs (a signal, the budget): it would run on in the org
                self._abort_job(job_id, what)

    def _wait_for(self, job_id: str, what: str) -> None:
        """Poll until the job completes, checking the API budget between polls.

        The wait between polls ends at once when the run is stopping (:attr:`stopping`).
        """
        wait, longest = BULK_POLL_SECONDS
        while True:
            info = self._bulk("GET", f"/{job_id}", f"{what} (poll)").json()
            state = info.get("state")
            if state == "JobComplete":
                return
            if state == "Failed":
                reason = str(info.get("errorMessage") or "no reason given")
                message = f"{what}: job {job_id} failed: {reason}"
                if any(marker.lower() in reason.lower() for marker in RETRYABLE_JOB_ERRORS):
                    raise QueryTooBig(message)
                raise SalesforceClientError(message)  # smaller windows would fail the same way
            if state == "Aborted":
                raise SalesforceClientError(f"{what}: job {job_id} was aborted")
            self.check_budget()
            if self.stopping.wait(wait):
                raise SalesforceClientError(f"{what}: stopped while job {job_id} was running")
            wait = min(longest, wait * 1.5)

    def _abort_job(self, job_id: str, what: str) -> None:
        """Abort, then delete, a job still running: a few seconds each, no retry, no re-login.

        Salesforce deletes only a terminated job ("Delete a Query Job": JobComplete, Aborted or
        Failed), and aborts one in UploadComplete or InProgress ("Abort a Query Job").
        """
        sf = self._sf
        if sf is None:
            return
        url = f"{sf.base_url}jobs/query/{job_id}"
        headers = {"Authorization": f"Bearer {sf.session_id}"}
        try:
            with requests.Session() as session:  # no retry adapter: a stop must not wait on backoff
                aborted = session.patch(
                    url, json={"state": "Aborted"}, headers=headers, timeout=ABORT_SECONDS
                )
                deleted = session.delete(url, headers=headers, timeout=ABORT_SECONDS)
        except requests.RequestException as exc:
            self.logger.warning("Could not abort Bulk job %s: %s", job_id, connection_problem(exc))
            return
        if deleted.status_code >= 300:
            self.logger.warning(
                "Could not abort and delete Bulk job %s (%s: HTTP %s, then HTTP %s)",
                job_id,
                what,
                aborted.status_code,
                deleted.status_code,
            )
        else:
            self.logger.info("Bulk job %s aborted and deleted", job_id)

    def _delete_job(self, job_id: str, what: str) -> None:
        """Delete a read (or abandoned) job; failing to is worth a warning, not a failed run."""
        try:
            self._bulk("DELETE", f"/{job_id}", f"{what} (delete job)")
        except SalesforceClientError as exc:
            self.logger.warning("Could not delete Bulk job %s: %s", job_id, exc)
