"""The Salesforce REST API emulator: routes, sessions, API usage, query cursors, faults, admin."""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from .._server import BackgroundServer, Fault, LocalCA
from .auth import Authenticator, OAuthError, Sessions
from .bulk import BulkApi
from .data import Org, format_datetime
from .errors import ApiError, json_response, not_found
from .query import CompiledQuery, Node, compile_query, render
from .schema import API_VERSIONS, OBJECTS, ORG_ID
from .webflow import WebServerFlow

FAULT_KINDS = (
    "expire_session",
    "expire_cursor",
    "request_limit",
    "query_timeout",
    "bulk_job_failed",
    "disconnect",
)
MAX_URI_BYTES = 16_384  # https://help.salesforce.com/s/articleView?id=000386238 (414 URI Too Long)
MAX_CURSORS = 200  # open query cursors kept; older ones answer INVALID_QUERY_LOCATOR
MAX_LOG = 100_000

_DATA_PATH = re.compile(r"/services/data/v(\d+\.\d)(/.*)?")
_LOCATOR_PATH = re.compile(r"/services/data/v\d+\.\d/query(?:All)?/([^/]+)")
_RESULTS_PATH = re.compile(r"/services/data/v\d+\.\d/jobs/query/[^/]+/results/?")
_QUERY_PATH = re.compile(r"/services/data/v\d+\.\d/query(?:All)?/?")
_JOB_PATH = re.compile(r"/services/data/v\d+\.\d/jobs/query/(750\w+)/?")
_IDENTITY_PATH = re.compile(r"/id/(00D\w{12,15})/(005\w{12,15})")


@dataclass
class Cursor:
    """A query's result rows, kept so that each ``nextRecordsUrl`` page is a slice of them."""

    rows: list[int]
    root: Node
    page_size: int


class SalesforceEmulator(BackgroundServer):
    """An HTTPS server that behaves like a Salesforce org's REST API (see ``emulators.salesforce``).

    ``accounts`` rows of Account (and half as many Subscription__c) are generated from
    ``seed``. Query pages hold ``page_size`` records at most. A query (or Bulk job) matching
    more than ``query_timeout_rows`` rows without a smaller LIMIT fails with QUERY_TIMEOUT, as
    big unbounded queries do in real orgs. ``sandbox`` makes the JWT flow accept only the
    sandbox audience ``https://test.salesforce.com``. Every data API call counts
    against ``api_max`` (reported in ``Sforce-Limit-Info``). Bulk API 2.0 query jobs complete ``bulk_delay``
    seconds after creation. ``rotate_refresh_tokens`` turns on the connected app's refresh token
    rotation (see :class:`~emulators.salesforce.auth.RefreshTokens`).
    """

    # A page's latency is Salesforce's response time, building the page included; added on top,
    # the emulator's own rendering (about 27 ms per 2,000 rows) made every page slower than the
    # latency asked for, and the benchmark's floor (pages x latency) out of any client's reach.
    latency_includes_handling = True

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ca: LocalCA | None = None,
        accounts: int = 250,
        seed: int = 7,
        page_size: int = 2000,
        api_max: int = 1_000_000,
        bulk_delay: float = 0.0,
        query_timeout_rows: int | None = None,
        sandbox: bool = False,
        rotate_refresh_tokens: bool = False,
    ) -> None:
        super().__init__(host=host, port=port, ca=ca)
        self.org = Org(accounts=accounts, seed=seed)
        self.page_size = page_size
        self.api_max = api_max
        self.sessions = Sessions()
        self.web_flow = WebServerFlow()
        self.auth = Authenticator(self.sessions, self.org.integration_user_id, self.web_flow)
        self._rotate_default = rotate_refresh_tokens
        self.auth.refresh_tokens.rotate = rotate_refresh_tokens
        self.jwt_private_key_pem: str = self.auth.jwt_private_key_pem
        self.jwt_public_key_pem: str = self.auth.jwt_public_key_pem
        self._lock = threading.Lock()
        self._api_calls = 0
        self._cursors: OrderedDict[str, Cursor] = OrderedDict()
        self._log: list[dict[str, Any]] = []
        self.bulk = BulkApi(self.org, delay=bulk_delay)
        self.query_timeout_rows = query_timeout_rows
        self.sandbox = sandbox

    # -- Python API -----------------------------------------------------------------------------
    @property
    def clock_offset(self) -> float:
        """Seconds the org's clock runs ahead of ours (negative: behind); 0 after a reset."""
        return self.org.clock_offset_ms / 1000

    @clock_offset.setter
    def clock_offset(self, seconds: float) -> None:
        self.org.clock_offset_ms = round(seconds * 1000)

    @property
    def api_calls(self) -> int:
        """Data API calls counted so far (what ``Sforce-Limit-Info`` reports as used)."""
        with self._lock:
            return self._api_calls

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The request log: ``{method, path, status, query}`` per request (admin calls excluded)."""
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    def new_session(self) -> str:
        """An access token, as the token endpoint would issue (for tests that skip the login)."""
        return self.sessions.issue()

    @property
    def rotate_refresh_tokens(self) -> bool:
        """Whether each refresh returns a new refresh token and invalidates the one used."""
        return self.auth.refresh_tokens.rotate

    @rotate_refresh_tokens.setter
    def rotate_refresh_tokens(self, on: bool) -> None:
        self.auth.refresh_tokens.rotate = on

    def issue_refresh_token(self) -> str:
        """A refresh token of a new authorization, as connecting the app again gives."""
        return self.auth.refresh_tokens.issue()

    def expire_sessions(self) -> int:
        """Invalidate every issued token; the next data call gets 401 INVALID_SESSION_ID."""
        return self.sessions.expire_all()

    def reset(self) -> None:
        """Back to the generated rows; clears the log, faults, latency, sessions, cursors and counters.

        Only the configured refresh token is valid, rotated as constructed.
        """
        self.new_epoch()
        self.org.reset()
        self.faults.clear()
        self.set_latency(0.0)
        self.sessions.expire_all()
        self.web_flow.reset()
        self.auth.refresh_tokens.reset()
        self.auth.refresh_tokens.rotate = self._rotate_default
        self.bulk.clear()
        with self._lock:
            self._log.clear()
            self._cursors.clear()
            self._api_calls = 0

    # -- request handling -----------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/__emulator/"):
            try:
                return self._admin(request)
            except ApiError as exc:
                return json_response({"error": str(exc)}, exc.status)
            except (ValueError, KeyError, TypeError, HTTPException) as exc:
                return json_response({"error": f"{type(exc).__name__}: {exc}"}, 400)
        try:
            self.bulk.query_timeout_rows = self.query_timeout_rows
            self.auth.sandbox = self.sandbox
            uri = request.environ.get("REQUEST_URI") or request.environ.get("RAW_URI") or request.full_path
            uri_bytes = len(uri.encode())
            if uri_bytes > MAX_URI_BYTES:
                # Salesforce's edge refuses long request lines before any API logic.
                return self._finish(request, Response("URI Too Long", status=414))
            header_bytes = sum(len(f"{k}: {v}\r\n".encode()) for k, v in request.headers.items())
            if uri_bytes + header_bytes > MAX_URI_BYTES:
                # URI plus headers past 16,384 bytes: 431 (Developer Limits and Allocations Quick
                # Reference, "API Request Limits"; a real one in airbytehq/airbyte#20703).
                return self._finish(request, Response("Request Header Fields Too Large", status=431))
            response = self._route(request)
        except ApiError as exc:
            response = json_response(exc.body(), exc.status)
        except OAuthError as exc:
            response = json_response({"error": exc.error, "error_description": exc.description}, 400)
        except Exception:  # an emulator bug: answer like Salesforce does, and show the traceback
            traceback.print_exc()
            error = ApiError(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred in the emulator.")
            response = json_response(error.body(), 500)
        return self._finish(request, response)

    def _finish(self, request: Request, response: Response) -> Response:
        self.hold_until_due(request)  # the log's time is when the answer leaves
        if request.path.startswith("/services/") and request.path.rstrip("/") != "/services/data":
            response.headers["Sforce-Limit-Info"] = self._limit_info()
        entry = {
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "query": _logged_query(request),
            "time": time.time(),  # when answered (``make bench`` draws its timeline from it)
        }
        if not self.current(request):
            return response  # arrived before the last reset: not this test's request
        with self._lock:
            self._log.append(entry)
            if len(self._log) > MAX_LOG:
                del self._log[: len(self._log) - MAX_LOG]
        return response

    def _limit_info(self) -> str:
        with self._lock:
            used = self._api_calls
        return f"api-usage={used}/{self.api_max}"

    def _route(self, request: Request) -> Response:
        path = request.path
        if path == "/services/oauth2/token":
            if request.method != "POST":
                raise OAuthError("invalid_request", "must use HTTP POST")
            return json_response(self.auth.token(request, self.url))
        if path == "/services/oauth2/authorize":
            _allow(request, "GET", "POST")
            return self.web_flow.authorize(request)
        identity = _IDENTITY_PATH.fullmatch(path)
        if identity:
            _allow(request, "GET")
            return self._identity(request, *identity.groups())
        soap = re.fullmatch(r"/services/Soap/u/(\d+\.\d)/?", path)
        if soap:
            _allow(request, "POST")
            status, xml = self.auth.soap_login(request.get_data(as_text=True), self.url, soap.group(1))
            return Response(xml, status=status, content_type="text/xml; charset=utf-8")
        m = _DATA_PATH.fullmatch(path)
        if m is None:
            raise not_found()
        self._authenticate(request)
        self._count_call()
        version, rest = m.group(1), m.group(2) or ""
        if version not in API_VERSIONS:
            raise not_found()
        return self._data(request, version, rest)

    def _identity(self, request: Request, org_id: str, user_id: str) -> Response:
        """The identity URL: who the access token's user is.

        Salesforce Help, "Identity URLs",
        https://help.salesforce.com/s/articleView?id=xcloud.remoteaccess_using_openid.htm. A bad
        token is 403 ``Bad_OAuth_Token``, as Salesforce answers it.
        """
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not self.sessions.valid(token.strip()):
            return Response("Bad_OAuth_Token", status=403, content_type="text/plain")
        users = self.org.tables["User"]
        if org_id != ORG_ID or user_id not in users.index:
            raise not_found()
        with self.org.lock:
            row = users.index[user_id]
            user = {name: column[row] for name, column in users.columns.items()}
        urls = {
            "rest": f"{self.url}/services/data/v{{version}}/",
            "sobjects": f"{self.url}/services/data/v{{version}}/sobjects/",
            "query": f"{self.url}/services/data/v{{version}}/query/",
            "partner": f"{self.url}/services/Soap/u/{{version}}/{org_id[:15]}",
        }
        return json_response(
            {
                "id": f"{self.url}/id/{org_id}/{user_id}",
                "asserted_user": True,
                "user_id": user_id,
                "organization_id": org_id,
                "username": user["Username"],
                "nick_name": str(user["Username"]).split("@")[0],
                "display_name": user["Name"],
                "email": user["Email"],
                "email_verified": True,
                "first_name": user["FirstName"],
                "last_name": user["LastName"],
                "active": bool(user["IsActive"]),
                "user_type": "STANDARD",
                "language": "en_US",
                "locale": "en_US",
                "utcOffset": 0,
                "urls": urls,
            }
        )

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not self.sessions.valid(token.strip()):
            raise ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")

    def _count_call(self) -> None:
        with self._lock:
            if self._api_calls >= self.api_max:
                raise _request_limit()
            self._api_calls += 1

    # -- data API -------------------------------------------------------------------------------
    def _data(self, request: Request, version: str, rest: str) -> Response:
        base = f"/services/data/v{version}"
        parts = [p for p in rest.split("/") if p]
        head = parts[0] if parts else ""
        if not parts:
            # Resources by Version (REST API Developer Guide, "List Available REST Resources"):
            # relative links, except "identity", the current user's absolute identity URL.
            _allow(request, "GET", "HEAD")
            names = ("sobjects", "query", "queryAll", "jobs", "limits", "search", "composite")
            links: dict[str, str] = {name: f"{base}/{name}" for name in names}
            links["identity"] = f"{self.url}/id/{ORG_ID}/{self.org.integration_user_id}"
            return json_response(links)
        if head in ("query", "queryAll"):
            _allow(request, "GET", "HEAD")
            if len(parts) == 1:
                return self._query(request, base, include_deleted=head == "queryAll")
            if len(parts) == 2:
                return self._page(request, base, parts[1])
            raise not_found()
        if head == "sobjects":
            return self._sobjects(request, version, parts[1:])
        if head == "jobs" and parts[1:2] == ["query"]:
            return self.bulk.handle(request, version, parts[2:])
        raise not_found()

    # -- sobjects -------------------------------------------------------------------------------
    def _sobjects(self, request: Request, version: str, parts: list[str]) -> Response:
        if not parts:
            _allow(request, "GET", "HEAD")
            return json_response(
                {
                    "encoding": "UTF-8",
                    "maxBatchSize": 200,
                    "sobjects": [obj.global_entry(version) for obj in OBJECTS.values()],
                }
            )
        try:
            obj = self.org.table(parts[0]).obj
        except ApiError:
            raise not_found() from None
        if parts[1:] == ["describe"]:
            _allow(request, "GET", "HEAD")
            return json_response(obj.describe(version))
        raise not_found()

    # -- query ----------------------------------------------------------------------------------
    def _query(self, request: Request, base: str, include_deleted: bool) -> Response:
        compiled: CompiledQuery = compile_query(self.org, request.args.get("q", ""))
        with self.org.lock:
            rows = compiled.run(include_deleted)
        check_timeout(compiled, rows, self.query_timeout_rows)
        if compiled.count_only:
            return json_response({"totalSize": len(rows), "done": True, "records": []})
        cursor = Cursor(rows, compiled.root, self.page_size)
        locator = None
        if len(rows) > cursor.page_size:
            locator = "01g" + secrets.token_hex(8)[:12].upper() + "AAA"
            with self._lock:
                self._cursors[locator] = cursor
                while len(self._cursors) > MAX_CURSORS:
                    self._cursors.popitem(last=False)
        return self._render_page(base, cursor, locator, 0)

    def _page(self, request: Request, base: str, token: str) -> Response:
        locator, _, offset_text = token.rpartition("-")
        with self._lock:
            cursor = self._cursors.get(locator)
            if cursor is not None:
                self._cursors.move_to_end(locator)
        if cursor is None or not offset_text.isdigit():
            raise _invalid_locator()
        offset = int(offset_text)
        if offset >= len(cursor.rows):
            raise _invalid_locator()
        return self._render_page(base, cursor, locator, offset)

    def _render_page(self, base: str, cursor: Cursor, locator: str | None, offset: int) -> Response:
        end = offset + cursor.page_size
        with self.org.lock:
            records = render(self.org, cursor.root, cursor.rows[offset:end], base)
        body: dict[str, Any] = {"totalSize": len(cursor.rows), "done": end >= len(cursor.rows)}
        if not body["done"]:
            # Salesforce uses /query/ for the next page of queryAll too.
            body["nextRecordsUrl"] = f"{base}/query/{locator}-{end}"
        body["records"] = records
        return json_response(body)

    # -- faults ---------------------------------------------------------------------------------
    def fault_applies(self, request: Request, fault: Fault) -> bool:
        path = request.path
        if path.startswith("/__emulator/"):
            return False  # the admin API must keep working while faults are pending
        if fault.kind in ("expire_session", "request_limit"):
            return _DATA_PATH.fullmatch(path) is not None
        if fault.kind == "expire_cursor":
            return _LOCATOR_PATH.fullmatch(path) is not None
        if fault.kind == "query_timeout":
            return _QUERY_PATH.fullmatch(path) is not None
        if fault.kind == "bulk_job_failed":
            return request.method == "GET" and _JOB_PATH.fullmatch(path) is not None
        return True

    def latency_applies(self, request: Request) -> bool:
        """The latency switch delays each page of records (see :func:`is_records_page`)."""
        return is_records_page(request.path)

    def fault_response(self, request: Request, fault: Fault) -> Response | None:
        error: ApiError | None = None
        if fault.kind == "expire_session":
            self.expire_sessions()
            error = ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")
        elif fault.kind == "expire_cursor":
            match = _LOCATOR_PATH.fullmatch(request.path)
            if match:
                with self._lock:
                    self._cursors.pop(match.group(1).rpartition("-")[0], None)
            error = _invalid_locator()
        elif fault.kind == "request_limit":
            # A string body is the message: "ConcurrentPerOrgLongTxn Limit exceeded." is the
            # concurrency flavour (SalesforceLabs/OrgCheck#432), the default the daily limit.
            error = _request_limit(fault.body if isinstance(fault.body, str) and fault.body else None)
        elif fault.kind == "query_timeout":
            error = ApiError(400, "QUERY_TIMEOUT", "Your query request was running for too long.")
        elif fault.kind == "bulk_job_failed":
            match = _JOB_PATH.fullmatch(request.path)
            # A string body is the job's errorMessage (e.g. "INVALID_FIELD: …"); by default
            # the timeout that windowing recovers from.
            message = fault.body if isinstance(fault.body, str) and fault.body else None
            self.bulk.fail_next_poll(
                match.group(1) if match else None,
                message or "QUERY_TIMEOUT: Your query request was running for too long.",
            )
            return None  # the poll itself answers normally and reports the Failed state
        elif fault.kind == "disconnect":
            # The connection drops before any byte of the answer, as a reset in the network does.
            self.drop_connection(request)
            return self._finish(request, Response(b"", status=500))
        elif fault.kind == "cut_body":
            return self._cut_short(request, self.handle(request))
        elif fault.kind is not None:
            error = ApiError(500, "UNKNOWN_EXCEPTION", f"unknown emulator fault kind {fault.kind}")
        if error is not None:
            response = json_response(error.body(), error.status)
        elif fault.status is None:
            return None  # a delay alone: answer normally, late
        else:
            response = self._status_fault(fault)
        return self._finish(request, response)

    def _cut_short(self, request: Request, response: Response) -> Response:
        """The answer as it would be, whose connection drops after a third of the body.

        A network cut while a page downloads: the status and headers (the whole body's
        ``Content-Length`` among them) and the first bytes arrive, then the connection ends.
        """
        body = response.get_data()
        cut = max(1, len(body) // 3)

        def partial() -> Iterator[bytes]:
            yield body[:cut]
            self.drop_connection(request)

        short = Response(partial(), status=response.status_code, headers=list(response.headers.items()))
        short.headers["Content-Length"] = str(len(body))
        return short

    @staticmethod
    def _status_fault(fault: Fault) -> Response:
        status: int | str = fault.status or 500
        body = fault.body
        if fault.status == 406:
            status = "406 CustomNotAcceptable"  # the reason phrase taps look for
        if body is None and fault.status in (500, 503):
            code = "UNKNOWN_EXCEPTION" if fault.status == 500 else "SERVER_UNAVAILABLE"
            body = [{"errorCode": code, "message": "An unexpected error occurred (emulated)."}]
        if body is None or isinstance(body, (str, bytes)):
            return Response(body or "", status=status, headers=fault.headers)
        return Response(
            json.dumps(body, ensure_ascii=False),
            status=status,
            headers=fault.headers,
            content_type="application/json;charset=UTF-8",
        )

    # -- admin API ------------------------------------------------------------------------------
    def _admin(self, request: Request) -> Response:
        route = request.path[len("/__emulator/") :].rstrip("/")
        method = request.method
        if route == "requests":
            if method == "DELETE":
                self.clear_requests()
                return json_response({"cleared": True})
            return json_response(self.requests)
        if route == "faults":
            if method == "POST":
                payload = request.get_json(force=True)
                items = payload if isinstance(payload, list) else [payload]
                for item in items:
                    self.faults.add(_fault_from_json(item))
                return json_response({"pending": len(self.faults.pending())}, 201)
            if method == "DELETE":
                self.faults.clear()
                return json_response({"pending": 0})
            return json_response([asdict(f) for f in self.faults.pending()])
        if route == "refresh-token-rotation":
            if method == "POST":
                self.rotate_refresh_tokens = bool(request.get_json(force=True).get("enabled"))
            tokens = self.auth.refresh_tokens
            return json_response(
                {"enabled": tokens.rotate, "rotations": tokens.rotations, "revocations": tokens.revocations}
            )
        if route == "reset" and method == "POST":
            self.reset()
            return json_response({"reset": True})
        if route == "latency" and method == "POST":
            payload = request.get_json(force=True) or {}
            self.set_latency(payload.get("seconds", 0.0), payload.get("jitter", 0.0))
            return json_response(asdict(self.latency))
        if route.startswith("rows/"):
            include = request.args.get("include_deleted", "0").lower() in ("1", "true", "yes")
            return json_response(self.org.rows(route[len("rows/") :], include_deleted=include))
        if route == "info":
            return json_response(
                {
                    "url": self.url,
                    "ca_path": str(self.ca_path),
                    "api_calls": self.api_calls,
                    "api_max": self.api_max,
                    "page_size": self.page_size,
                    "latency": asdict(self.latency),
                    "sessions": len(self.sessions),
                    "rows": {name: len(t) for name, t in self.org.tables.items()},
                    "now": format_datetime(self.org.now()),
                }
            )
        return json_response({"error": f"no admin route {method} /__emulator/{route}"}, 404)


# -- helpers ------------------------------------------------------------------------------------
def is_records_page(path: str) -> bool:
    """A request that answers a page of records.

    A REST query page (the first or a ``nextRecordsUrl``) or a Bulk API 2.0 results page. Logins, describes
    and job polls are not.
    """
    return (
        _QUERY_PATH.fullmatch(path) is not None
        or _LOCATOR_PATH.fullmatch(path) is not None
        or _RESULTS_PATH.fullmatch(path) is not None
    )


def _logged_query(request: Request) -> str | None:
    """The SOQL of a request: ``q`` of a query, or the ``query`` of a new Bulk API job."""
    if request.method == "POST" and request.path.rstrip("/").endswith("/jobs/query"):
        body = request.get_json(silent=True)
        return str(body.get("query")) if isinstance(body, dict) else None
    return request.args.get("q")


def _allow(request: Request, *methods: str) -> None:
    if request.method not in methods:
        raise _method_not_allowed(request, *methods)


def _method_not_allowed(request: Request, *methods: str) -> ApiError:
    return ApiError(
        405,
        "METHOD_NOT_ALLOWED",
        f"HTTP Method '{request.method}' not allowed. Allowed are {','.join(methods)}",
    )


def check_timeout(compiled: CompiledQuery, rows: list[int], limit_rows: int | None) -> None:
    """QUERY_TIMEOUT for a query over more than ``limit_rows`` rows that a LIMIT does not bound."""
    limit = compiled.query.limit
    if limit_rows is not None and len(rows) > limit_rows and (limit is None or limit > limit_rows):
        raise ApiError(400, "QUERY_TIMEOUT", "Your query request was running for too long.")


def _request_limit(message: str | None = None) -> ApiError:
    return ApiError(403, "REQUEST_LIMIT_EXCEEDED", message or "TotalRequests Limit exceeded.")


def _invalid_locator() -> ApiError:
    return ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")


def _fault_from_json(item: Any) -> Fault:
    if not isinstance(item, dict):
        raise ValueError("a fault is a JSON object with Fault fields")
    known = {f.name for f in fields(Fault)}
    unknown = set(item) - known
    if unknown:
        raise ValueError(f"unknown fault fields: {sorted(unknown)}")
    fault = Fault(**item)
    if fault.kind is not None and fault.kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {fault.kind!r}; known: {', '.join(FAULT_KINDS)}")
    if fault.status is None and fault.kind is None and not fault.delay:
        raise ValueError("a fault needs a status, a kind or a delay")
    return fault
