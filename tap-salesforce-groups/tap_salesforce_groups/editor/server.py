"""The editor's local HTTP server: the page, its static files and the JSON API (docs/SPEC.md §8a).

Standard library only (``http.server.ThreadingHTTPServer``): the tap gains no web framework
as a runtime dependency, and a loopback server for one user needs none. Every request must
carry the per-run token and name this server in its Host header; bodies are size-limited.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from functools import cached_property
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from groups_mapping import (
    MappingConfig,
    MappingError,
    load_mapping,
    parse_mapping,
    validate,
    write_atomically,
)
from groups_mapping.validate import SALESFORCE_OBJECT
from tap_salesforce_groups.connect import (
    CALLBACK_PATH,
    ConnectError,
    StateMismatch,
    default_env_file,
    redirect_uri,
)
from tap_salesforce_groups.editor.connection import EditorConnection, NotConnected
from tap_salesforce_groups.editor.org import Org, OrgError
from tap_salesforce_groups.editor.preview import PreviewError, preview
from tap_salesforce_groups.editor.runner import runs_it
from tap_salesforce_groups.editor.schedule import ProjectSchedule, ScheduleError
from tap_salesforce_groups.project import validate_in_project

MAX_BODY_BYTES = 1_000_000  # a mapping with 1000 properties is about 100 kB
TOKEN_HEADER = "X-Editor-Token"  # noqa: S105 (a header name)
TOKEN_PLACEHOLDER = "__EDITOR_TOKEN__"  # noqa: S105 (replaced per response)
STATIC_TYPES = {
    "editor.css": "text/css; charset=utf-8",
    "editor.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token is in the page URL
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'",
}
EMPTY_DOCUMENT: dict[str, Any] = {"version": 1, "mappings": []}

log = logging.getLogger("tap-salesforce-groups.editor")


class HttpError(Exception):
    """A request the editor refuses: status and a one-line message for the JSON body."""

    def __init__(
        self,
        status: HTTPStatus,
        message: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}


def etag(content: bytes | None) -> str:
    """A strong ETag for a file's bytes (RFC 9110 §8.8.3): a hash, so any change shows."""
    return '"' + hashlib.sha256(content or b"").hexdigest()[:32] + '"'


def _precondition_holds(current: str | None, if_match: str | None, if_none_match: str | None) -> bool:
    """Whether a save may go on, by RFC 9110 §13.1.1-2 (``current`` is None: no file yet).

    If-Match lists ETags (strong comparison) or is ``*`` (any file); If-None-Match lists ETags
    that must not match, or is ``*`` (no file yet).
    """
    if if_match is not None:
        tags = [t.strip() for t in if_match.split(",")]
        return current is not None and ("*" in tags or current in tags)
    if if_none_match is not None:
        tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        return current is None if "*" in tags else current not in tags
    return True


class EditorApp:
    """What the routes do, independent of HTTP: read and check mappings, talk to the org."""

    def __init__(
        self,
        org: Org | None,
        settings: dict[str, Any],
        schedule: ProjectSchedule,
        *,
        not_connected: str | None = None,
        env_file: Path | None = None,
    ) -> None:
        self.connection = EditorConnection(settings, org, not_connected, env_file or default_env_file())
        self.port = 0  # set by the server once it listens: the Connect callback's port
        self.authority = ""
        self.mapping_file = Path(settings["mapping_file"]) if settings.get("mapping_file") else None
        self.inline_mapping = settings.get("mapping")
        self.schedule = schedule
        self._save_lock = threading.Lock()

    @property
    def org(self) -> Org:
        """The logged-in org; 409 while no credentials work (the page offers Connect)."""
        try:
            return self.connection.org
        except NotConnected as exc:
            raise HttpError(HTTPStatus.CONFLICT, str(exc), extra={"connect": True}) from None

    def objects(self) -> dict[str, Any]:
        """The org's queryable objects."""
        return {"objects": self.org.objects()}

    def connection_status(self) -> dict[str, Any]:
        """Whether the editor is connected to an org, and as whom."""
        return {**self.connection.status(), "callback_url": redirect_uri(self.port)}

    def connect(self) -> dict[str, Any]:
        """Start Connect to Salesforce from the page."""
        try:
            return self.connection.start(redirect_uri(self.port))
        except NotConnected as exc:
            raise HttpError(HTTPStatus.CONFLICT, str(exc)) from None

    def preview(self, body: Any) -> dict[str, Any]:
        """Sample groups per mapping as the target would send them (reads 5 rows each, writes nothing)."""
        wrapped = isinstance(body, dict) and "mapping" in body
        document = body["mapping"] if wrapped else body
        options = {k: body.get(k) for k in ("null_values", "deleted_records")} if wrapped else {}
        org = self.org
        try:
            return preview(document, org.settings, org.client, options)
        except PreviewError as exc:
            raise HttpError(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc)) from None

    def fields(self, name: str) -> dict[str, Any]:
        """The fields the mapping may name on an object."""
        if not SALESFORCE_OBJECT.match(name):
            raise HttpError(HTTPStatus.BAD_REQUEST, f"'{name}' is not a Salesforce object name")
        try:
            return {"object": name, "fields": self.org.fields(name)}
        except OrgError as exc:
            if "NOT_FOUND" in str(exc):
                raise HttpError(
                    HTTPStatus.NOT_FOUND, f"{name}: no such object, or not visible to this user"
                ) from exc
            raise

    def mapping(self) -> dict[str, Any]:
        """The mapping as the tap would read it now, with the problems ``validate`` reports."""
        return self.mapping_and_etag()[0]

    def mapping_and_etag(self) -> tuple[dict[str, Any], str | None]:
        """The mapping (as :meth:`mapping`) and the ETag of the file it was read from (None: no file)."""
        source = str(self.mapping_file) if self.mapping_file else None
        document: Any = self.inline_mapping
        tag = None
        if self.mapping_file is not None:
            try:
                raw = self.mapping_file.read_bytes()
            except FileNotFoundError:
                empty = {"mapping": EMPTY_DOCUMENT, "mapping_file": source, "exists": False}
                return {**empty, "problems": validate(EMPTY_DOCUMENT)}, None
            except OSError:
                raw = None
            tag = etag(raw)
            try:
                document = json.loads((raw or b"").decode("utf-8"))
            except ValueError:
                document = None  # load_mapping below says what is wrong, in validate's words
        try:
            load_mapping(None if self.mapping_file else self.inline_mapping, self.mapping_file)
            problems: list[str] = []
        except MappingError as exc:
            problems = exc.problems
        return {"mapping": document, "mapping_file": source, "exists": True, "problems": problems}, tag

    def validate(self, document: Any) -> list[str]:
        """``validate``'s problems, then those of the document with the project's other mappings."""
        return validate_in_project(document, str(self.mapping_file) if self.mapping_file else None)

    def _saved_mapping(self) -> MappingConfig | None:
        """The mapping as saved now (what a new one is compared with), or None."""
        try:
            return load_mapping(None if self.mapping_file else self.inline_mapping, self.mapping_file)
        except MappingError:
            return None

    def save(
        self, document: Any, if_match: str | None = None, if_none_match: str | None = None
    ) -> tuple[dict[str, Any], str]:
        """Validate and write ``document``; the answer and the new file's ETag.

        ``if_match`` (a list of ETags, or ``*``) and ``if_none_match`` (``*``: only a new file)
        are HTTP's preconditions, checked under the save lock just before the write: a file
        changed since the client read it raises 412 with the current document.
        """
        problems = self.validate(document)
        if problems:
            raise HttpError(
                HTTPStatus.UNPROCESSABLE_ENTITY,
                f"the mapping is invalid ({len(problems)} problems); the file was not changed",
                extra={"problems": problems},
            )
        if self.mapping_file is None:
            raise HttpError(
                HTTPStatus.CONFLICT,
                "the tap reads its mapping from the inline 'mapping' setting; set 'mapping_file' "
                "to save from the editor",
            )
        normalised = parse_mapping(document).to_dict()
        text = json.dumps(normalised, indent=2, ensure_ascii=False) + "\n"
        with self._save_lock:
            current, tag = self.mapping_and_etag()
            if not _precondition_holds(tag, if_match, if_none_match):
                raise HttpError(
                    HTTPStatus.PRECONDITION_FAILED,
                    f"{self.mapping_file} changed since this page read it (another tab, `scaffold "
                    "--write` or a `git pull`?); the file was not changed: reload it, merge, or "
                    "save over its current version (its ETag)",
                    headers={"ETag": tag} if tag else {},
                    extra={"current": current, "etag": tag},
                )
            try:
                backup = write_atomically(self.mapping_file, text, backup=True)
            except OSError as exc:
                raise HttpError(
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    f"cannot write {self.mapping_file}: {exc.strerror}",
                ) from exc
        log.info("Saved the mapping to %s", self.mapping_file)
        answer = {
            "saved": str(self.mapping_file),
            "backup": str(backup) if backup else None,
            "mapping": normalised,
        }
        return answer, etag(text.encode("utf-8"))

    def verify(self, document: Any) -> dict[str, Any]:
        """``verify`` for a mapping that is not saved yet."""
        result = self.org.verify(document, previous=self._saved_mapping())
        return {"problems": result.problems, "warnings": result.warnings, "summary": result.summary}

    def get_schedule(self) -> dict[str, Any]:
        """The Meltano schedule's cadence."""
        try:
            return _with_runner(self.schedule.read().to_dict())
        except ScheduleError as exc:
            raise HttpError(HTTPStatus.CONFLICT, str(exc)) from exc

    def set_schedule(self, body: Any) -> dict[str, Any]:
        """Set the Meltano schedule's cadence."""
        cadence = body.get("cadence") if isinstance(body, dict) else None
        try:
            return _with_runner(self.schedule.set(str(cadence)).to_dict())
        except ScheduleError as exc:
            status = HTTPStatus.BAD_REQUEST if cadence not in ("daily", "hourly") else HTTPStatus.CONFLICT
            raise HttpError(status, str(exc)) from exc


def _with_runner(cadence: dict[str, Any]) -> dict[str, Any]:
    """The cadence plus what runs it (Dagster, or the cron line to install): a schedule alone runs nothing."""
    return {**cadence, "runs_it": runs_it(cadence["project"], cadence["cadence"], cadence["schedules"])}


@dataclass(frozen=True)
class Reply:
    """What a route answers: status, body and the headers beyond the security ones."""

    status: HTTPStatus
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls, payload: Any, status: HTTPStatus = HTTPStatus.OK, headers: dict[str, str] | None = None
    ) -> Reply:
        """Send ``payload`` as JSON."""
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        return cls(status, body, "application/json; charset=utf-8", headers or {})


@dataclass(frozen=True)
class Request:
    """One request as a route sees it: the app, the path's parameters, the headers, the body."""

    app: EditorApp
    token: str
    method: str
    path: str
    params: dict[str, str]
    headers: Message
    read_json: Callable[[], Any]
    query: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as JSON (size-limited; a clear 4xx when it is not a JSON document)."""
        return self.read_json()


Action = Callable[[Request], Reply]


@dataclass(frozen=True)
class Route:
    """One line of the route table: a method, a path pattern and the action that answers it.

    ``{name}`` in ``path`` matches one path segment (percent-decoded) and reaches the action as
    ``request.params["name"]``. A GET route answers HEAD too, without the body.
    """

    method: str
    path: str
    action: Action

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """The route's path as a compiled pattern."""
        parts = re.split(r"\{(\w+)\}", self.path)
        regex = "".join(
            re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
        )
        return re.compile(f"^{regex}$")

    def match(self, path: str) -> dict[str, str] | None:
        """The path's parameters when it matches this route, else None."""
        found = self.pattern.match(path)
        return None if found is None else {k: unquote(v) for k, v in found.groupdict().items()}


def _page(request: Request) -> Reply:
    html = _static_text("index.html").replace(TOKEN_PLACEHOLDER, request.token)
    return Reply(HTTPStatus.OK, html.encode("utf-8"), "text/html; charset=utf-8")


def _static(request: Request) -> Reply:
    name = request.params["name"]
    content_type = STATIC_TYPES.get(name)
    if content_type is None:
        raise HttpError(HTTPStatus.NOT_FOUND, f"no such static file: {name}")
    return Reply(HTTPStatus.OK, _static_text(name).encode("utf-8"), content_type)


_CALLBACK_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
    "<body><h1>{title}</h1><p>{text}</p><p><a href='{back}'>Back to the mapping editor</a></p></body></html>"
)


def _callback(request: Request) -> Reply:
    """Salesforce's redirect after the login.

    Guarded by the flow's ``state`` instead of the token (the browser arrives from Salesforce, without it).
    Success goes back to the editor page.
    """
    app = request.app
    back = f"http://{app.authority}/?token={request.token}"
    try:
        app.connection.finish(request.query)
    except StateMismatch as exc:
        text = f"{exc}; start again from the editor's Connect to Salesforce button."
        return _html(HTTPStatus.BAD_REQUEST, "Refused", text, back)
    except ConnectError as exc:
        return _html(HTTPStatus.BAD_REQUEST, "Not connected", str(exc), back)
    return Reply(HTTPStatus.SEE_OTHER, b"", "text/plain; charset=utf-8", {"Location": back})


def _html(status: HTTPStatus, title: str, text: str, back: str) -> Reply:
    page = _CALLBACK_PAGE.format(title=html.escape(title), text=html.escape(text), back=html.escape(back))
    return Reply(status, page.encode("utf-8"), "text/html; charset=utf-8")


def _get_mapping(request: Request) -> Reply:
    answer, tag = request.app.mapping_and_etag()
    return Reply.json(answer, headers={"ETag": tag} if tag else {})


def _put_mapping(request: Request) -> Reply:
    """Save, only over the version the client read: If-Match (or If-None-Match: * for a new file)."""
    if_match, if_none_match = request.headers.get("If-Match"), request.headers.get("If-None-Match")
    if if_match is None and if_none_match is None and request.app.mapping_file is not None:
        raise HttpError(
            HTTPStatus.PRECONDITION_REQUIRED,
            "PUT /api/mapping needs If-Match with the ETag of GET /api/mapping (If-None-Match: * "
            "for a new file), so that it cannot overwrite a change it has not seen",
        )
    answer, tag = request.app.save(request.json(), if_match, if_none_match)
    return Reply.json(answer, headers={"ETag": tag})


ROUTES: tuple[Route, ...] = (
    Route("GET", "/", _page),
    Route("GET", "/static/{name}", _static),
    Route("GET", "/api/objects", lambda r: Reply.json(r.app.objects())),
    Route("GET", "/api/objects/{name}/fields", lambda r: Reply.json(r.app.fields(r.params["name"]))),
    Route("POST", "/api/validate", lambda r: Reply.json({"problems": r.app.validate(r.json())})),
    Route("POST", "/api/verify", lambda r: Reply.json(r.app.verify(r.json()))),
    Route("GET", "/api/mapping", _get_mapping),
    Route("PUT", "/api/mapping", _put_mapping),
    Route("GET", "/api/schedule", lambda r: Reply.json(r.app.get_schedule())),
    Route("PUT", "/api/schedule", lambda r: Reply.json(r.app.set_schedule(r.json()))),
    Route("GET", "/api/connection", lambda r: Reply.json(r.app.connection_status())),
    Route("POST", "/api/connect", lambda r: Reply.json(r.app.connect())),
    Route("POST", "/api/preview", lambda r: Reply.json(r.app.preview(r.json()))),
    Route("GET", CALLBACK_PATH, _callback),
)
"""Every page and API of the editor (docs/mapping.md, "The mapping editor", lists the API)."""


def resolve(method: str, path: str, routes: tuple[Route, ...] = ROUTES) -> tuple[Route, dict[str, str]]:
    """The route for ``method`` and ``path``; 404 for an unknown path, 405 (with Allow) for a method."""
    matched = [(route, params) for route in routes if (params := route.match(path)) is not None]
    if not matched:
        raise HttpError(HTTPStatus.NOT_FOUND, f"no such page or API: {path}")
    wanted = "GET" if method == "HEAD" else method
    for route, params in matched:
        if route.method == wanted:
            return route, params
    methods = {route.method for route, _ in matched}
    allowed = ", ".join(sorted(methods | ({"HEAD"} if "GET" in methods else set())))
    raise HttpError(
        HTTPStatus.METHOD_NOT_ALLOWED,
        f"{method} is not allowed on {path} (allowed: {allowed})",
        {"Allow": allowed},
    )


class EditorServer(ThreadingHTTPServer):
    """The HTTP server, holding the app, the token and the one Host value it answers to."""

    daemon_threads = True

    def __init__(self, app: EditorApp, host: str, port: int) -> None:
        self.app = app
        self.token = secrets.token_urlsafe(32)
        super().__init__((host, port), Handler)
        bound_host, bound_port = str(self.server_address[0]), self.server_address[1]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.authority = f"{shown}:{bound_port}"
        app.port, app.authority = bound_port, self.authority

    @property
    def url(self) -> str:
        """The page URL with the token: what the user opens."""
        return f"http://{self.authority}/?token={self.token}"


class Handler(BaseHTTPRequestHandler):
    """One request: guards first (Host, token), then the route."""

    server: EditorServer
    server_version = "mapping-editor"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds a connection may sit idle or half-sent before its thread is freed
    body_read = False  # whether this request's body was consumed (else the connection closes)

    def version_string(self) -> str:
        """No server name or version in the Server header."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: request lines carry the token in their query string."""

    # -- guards ----------------------------------------------------------------------------
    def _check_host(self, path: str) -> None:
        host = (self.headers.get("Host") or "").strip().lower()
        # Salesforce sends the browser back to the callback URL registered on the connected app,
        # http://localhost:PORT/oauth/callback, whatever address the editor printed.
        callback_host = f"localhost:{self.server.server_address[1]}" if path == CALLBACK_PATH else None
        if host != self.server.authority.lower() and host != callback_host:
            raise HttpError(
                HTTPStatus.FORBIDDEN,
                f"Host '{host}' is not this editor's address {self.server.authority} "
                "(open the URL the editor printed)",
            )

    def _check_token(self, query: dict[str, list[str]]) -> None:
        given = self.headers.get(TOKEN_HEADER) or (query.get("token") or [""])[0]
        if not given:
            raise HttpError(
                HTTPStatus.FORBIDDEN,
                f"missing editor token: open the URL the editor printed, or send {TOKEN_HEADER}",
            )
        if not hmac.compare_digest(given.encode(), self.server.token.encode()):
            raise HttpError(HTTPStatus.FORBIDDEN, "wrong editor token (each editor run has its own)")

    def _body(self) -> Any:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise HttpError(HTTPStatus.BAD_REQUEST, "Content-Length is not a number") from None
        if length > MAX_BODY_BYTES:
            raise HttpError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request body of {length} bytes is over the editor's limit of {MAX_BODY_BYTES} bytes",
            )
        if length <= 0:
            raise HttpError(HTTPStatus.BAD_REQUEST, "request body is empty; send a JSON document")
        raw = self.rfile.read(length)
        self.body_read = True
        try:
            return json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise HttpError(HTTPStatus.BAD_REQUEST, "request body is not UTF-8") from None
        except RecursionError:  # `[[[[…` a thousand deep: no mapping nests like that
            raise HttpError(
                HTTPStatus.BAD_REQUEST, "request body is not a mapping: JSON nested too deeply"
            ) from None
        except json.JSONDecodeError as exc:
            raise HttpError(
                HTTPStatus.BAD_REQUEST,
                f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            ) from None

    # -- dispatch --------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        self.body_read = False
        try:
            query = parse_qs(parts.query)
            self._check_host(parts.path)
            if parts.path != CALLBACK_PATH:  # the callback's guard is the Connect flow's state
                self._check_token(query)
            route, params = resolve(method, parts.path)
            request = Request(
                self.server.app,
                self.server.token,
                method,
                parts.path,
                params,
                self.headers,
                self._body,
                {k: v[-1] for k, v in query.items()},
            )
            reply = route.action(request)
        except HttpError as exc:
            reply = Reply.json({"error": exc.message, **exc.extra}, exc.status, exc.headers)
        except OrgError as exc:
            reply = Reply.json({"error": f"Salesforce: {exc}"}, HTTPStatus.BAD_GATEWAY)
        except Exception as exc:
            log.exception("editor: %s %s failed", method, parts.path)
            reply = Reply.json(
                {"error": f"internal error: {exc.__class__.__name__}"}, HTTPStatus.INTERNAL_SERVER_ERROR
            )
        if not self.body_read and self._announces_body():
            self.close_connection = True  # a body left unread must not be parsed as the next request
        self._send(reply, with_body=method != "HEAD")

    def _announces_body(self) -> bool:
        return (
            bool(self.headers.get("Transfer-Encoding")) or (self.headers.get("Content-Length") or "0") != "0"
        )

    # -- responses -------------------------------------------------------------------------
    def _send(self, reply: Reply, with_body: bool) -> None:
        """Send ``reply``; HEAD gets the same headers (Content-Length included) and no body."""
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in {**SECURITY_HEADERS, **reply.headers}.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if with_body:
            self.wfile.write(reply.body)


def _dispatcher(method: str) -> Callable[[Handler], None]:
    def handle(self: Handler) -> None:
        self._dispatch(method)

    return handle


# Every method comes through one dispatcher so that unknown ones get 405, not 501.
for _method in ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"):
    setattr(Handler, f"do_{_method}", _dispatcher(_method))


def _static_text(name: str) -> str:
    return (
        resources.files("tap_salesforce_groups.editor").joinpath("static").joinpath(name).read_text("utf-8")
    )
