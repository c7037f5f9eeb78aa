"""The editor's local HTTP server: the page, its static files and the JSON API (docs/SPEC.md §8a).

Standard library only (``http.server.ThreadingHTTPServer``): the tap gains no web framework
as a runtime dependency, and a loopback server for one user needs none. Every request must
carry the per-run token and name this server in its Host header; bodies are size-limited.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from groups_mapping import MappingConfig, MappingError, load_mapping, parse_mapping, validate
from groups_mapping.validate import SALESFORCE_OBJECT
from tap_salesforce_groups.editor.org import Org, OrgError
from tap_salesforce_groups.editor.schedule import ProjectSchedule, ScheduleError

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


def save_atomically(path: Path, text: str) -> Path | None:
    """Write ``text`` to ``path`` via a temporary file and rename; the old file becomes ``.bak``."""
    backup = path.with_name(path.name + ".bak") if path.exists() else None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if backup is not None:
            os.chmod(tmp, path.stat().st_mode & 0o777)  # mkstemp makes 0600 files
            shutil.copy2(path, backup)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return backup


class EditorApp:
    """What the routes do, independent of HTTP: read and check mappings, talk to the org."""

    def __init__(self, org: Org, settings: dict[str, Any], schedule: ProjectSchedule) -> None:
        self.org = org
        self.mapping_file = Path(settings["mapping_file"]) if settings.get("mapping_file") else None
        self.inline_mapping = settings.get("mapping")
        self.schedule = schedule
        self._save_lock = threading.Lock()

    def objects(self) -> dict[str, Any]:
        return {"objects": self.org.objects()}

    def fields(self, name: str) -> dict[str, Any]:
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
        source = str(self.mapping_file) if self.mapping_file else None
        document: Any = self.inline_mapping
        if self.mapping_file is not None:
            if not self.mapping_file.exists():
                empty = {"mapping": EMPTY_DOCUMENT, "mapping_file": source, "exists": False}
                return {**empty, "problems": validate(EMPTY_DOCUMENT)}
            try:
                document = json.loads(self.mapping_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                document = None  # load_mapping below says what is wrong, in validate's words
        try:
            load_mapping(None if self.mapping_file else self.inline_mapping, self.mapping_file)
            problems: list[str] = []
        except MappingError as exc:
            problems = exc.problems
        return {"mapping": document, "mapping_file": source, "exists": True, "problems": problems}

    def _saved_mapping(self) -> MappingConfig | None:
        """The mapping as saved now (what a new one is compared with), or None."""
        try:
            return load_mapping(None if self.mapping_file else self.inline_mapping, self.mapping_file)
        except MappingError:
            return None

    def save(self, document: Any) -> dict[str, Any]:
        problems = validate(document)
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
            try:
                backup = save_atomically(self.mapping_file, text)
            except OSError as exc:
                raise HttpError(
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    f"cannot write {self.mapping_file}: {exc.strerror}",
                ) from exc
        log.info("Saved the mapping to %s", self.mapping_file)
        return {
            "saved": str(self.mapping_file),
            "backup": str(backup) if backup else None,
            "mapping": normalised,
        }

    def verify(self, document: Any) -> dict[str, Any]:
        result = self.org.verify(document, previous=self._saved_mapping())
        return {"problems": result.problems, "warnings": result.warnings, "summary": result.summary}

    def get_schedule(self) -> dict[str, Any]:
        try:
            return self.schedule.read().to_dict()
        except ScheduleError as exc:
            raise HttpError(HTTPStatus.CONFLICT, str(exc)) from exc

    def set_schedule(self, body: Any) -> dict[str, Any]:
        cadence = body.get("cadence") if isinstance(body, dict) else None
        try:
            return self.schedule.set(str(cadence)).to_dict()
        except ScheduleError as exc:
            status = HTTPStatus.BAD_REQUEST if cadence not in ("daily", "hourly") else HTTPStatus.CONFLICT
            raise HttpError(status, str(exc)) from exc


Route = Callable[["Handler", list[str]], Any]


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

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: request lines carry the token in their query string."""

    # -- guards ----------------------------------------------------------------------------
    def _check_host(self) -> None:
        host = (self.headers.get("Host") or "").strip().lower()
        if host != self.server.authority.lower():
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
        try:
            return json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise HttpError(HTTPStatus.BAD_REQUEST, "request body is not UTF-8") from None
        except json.JSONDecodeError as exc:
            raise HttpError(
                HTTPStatus.BAD_REQUEST,
                f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            ) from None

    # -- dispatch --------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        try:
            self._check_host()
            self._check_token(query)
            self._route(method, parts.path)
        except HttpError as exc:
            body: dict[str, Any] = {"error": exc.message, **exc.extra}
            if exc.status in (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, HTTPStatus.LENGTH_REQUIRED):
                self.close_connection = True  # the unread body must not be parsed as a request
            self._json(exc.status, body, exc.headers)
        except OrgError as exc:
            self._json(HTTPStatus.BAD_GATEWAY, {"error": f"Salesforce: {exc}"})
        except Exception as exc:
            log.exception("editor: %s %s failed", method, parts.path)
            self._json(
                HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {exc.__class__.__name__}"}
            )

    def _route(self, method: str, path: str) -> None:
        app = self.server.app
        segments = [unquote(s) for s in path.strip("/").split("/")] if path.strip("/") else []
        routes: dict[str, Callable[[], Any]]
        if not segments:
            routes = {"GET": self._index}
        elif segments[0] == "static" and len(segments) == 2:
            routes = {"GET": lambda: self._static(segments[1])}
        elif segments == ["api", "objects"]:
            routes = {"GET": lambda: self._json(HTTPStatus.OK, app.objects())}
        elif len(segments) == 4 and segments[:2] == ["api", "objects"] and segments[3] == "fields":
            routes = {"GET": lambda: self._json(HTTPStatus.OK, app.fields(segments[2]))}
        elif segments == ["api", "validate"]:
            routes = {"POST": lambda: self._json(HTTPStatus.OK, {"problems": validate(self._body())})}
        elif segments == ["api", "verify"]:
            routes = {"POST": lambda: self._json(HTTPStatus.OK, app.verify(self._body()))}
        elif segments == ["api", "mapping"]:
            routes = {
                "GET": lambda: self._json(HTTPStatus.OK, app.mapping()),
                "PUT": lambda: self._json(HTTPStatus.OK, app.save(self._body())),
            }
        elif segments == ["api", "schedule"]:
            routes = {
                "GET": lambda: self._json(HTTPStatus.OK, app.get_schedule()),
                "PUT": lambda: self._json(HTTPStatus.OK, app.set_schedule(self._body())),
            }
        else:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no such page or API: {path}")
        action = routes.get(method)
        if action is None:
            allowed = ", ".join(routes)
            raise HttpError(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{method} is not allowed on {path} (allowed: {allowed})",
                {"Allow": allowed},
            )
        action()

    # -- responses -------------------------------------------------------------------------
    def _send(self, status: HTTPStatus, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**SECURITY_HEADERS, **headers}.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: HTTPStatus, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8", headers or {})

    def _index(self) -> None:
        html = _static_text("index.html").replace(TOKEN_PLACEHOLDER, self.server.token)
        self._send(HTTPStatus.OK, html.encode("utf-8"), "text/html; charset=utf-8", {})

    def _static(self, name: str) -> None:
        content_type = STATIC_TYPES.get(name)
        if content_type is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no such static file: {name}")
        self._send(HTTPStatus.OK, _static_text(name).encode("utf-8"), content_type, {})


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
