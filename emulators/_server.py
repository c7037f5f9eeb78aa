"""What both emulators share: a per-run certificate authority and a background HTTPS server."""

from __future__ import annotations

import json
import shutil
import ssl
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


class LocalCA:
    """A CA made at start; its PEM file is what clients put in ``REQUESTS_CA_BUNDLE``.

    Without ``directory`` the file goes to a new temporary folder, removed by :meth:`close`
    (the emulators call it when they stop) or, failing that, when the process exits.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self._ca = trustme.CA(organization_name="groups-emulators")
        self._cert = self._ca.issue_cert("127.0.0.1", "localhost")
        self.directory = Path(directory or tempfile.mkdtemp(prefix="groups-emulators-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca_path = self.directory / "ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_path))
        # Only a folder made here is removed; a --ca-dir the user named keeps its ca.pem.
        self._cleanup = (
            weakref.finalize(self, shutil.rmtree, self.directory, ignore_errors=True)
            if directory is None
            else None
        )

    def close(self) -> None:
        """Remove the temporary folder holding ``ca.pem`` (nothing when ``directory`` was given)."""
        if self._cleanup is not None:
            self._cleanup()

    def server_context(self) -> ssl.SSLContext:
        """An SSL context for a server presenting a certificate for 127.0.0.1 and localhost."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(ctx)
        return ctx


class _QuietHandler(WSGIRequestHandler):
    """Request handler that does not print a line per request (the emulators keep their own log)."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        return

    def log(self, type: str, message: str, *args: Any) -> None:
        if type == "error":
            super().log(type, message, *args)


@dataclass
class Fault:
    """One injected fault: applies to the next ``count`` requests whose path contains ``path``.

    ``status`` answers with that HTTP status (``body`` and ``headers`` optional); ``delay``
    sleeps that many seconds before handling (alone: a slow response; with a status: a slow
    error). ``kind`` is an emulator-specific fault (e.g. ``expire_session``). ``after`` lets
    that many matching requests through first.
    """

    status: int | None = None
    count: int = 1
    path: str = ""
    delay: float = 0.0
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    kind: str | None = None
    after: int = 0


class FaultQueue:
    """Thread-safe list of pending faults, consumed by matching requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, path: str, applies: Callable[[Fault], bool] | None = None) -> Fault | None:
        """Return (and count down) the first fault matching this path, if any.

        ``applies`` can veto a fault for this request without using it up (e.g. a fault kind
        that only makes sense on some endpoints).
        """
        with self._lock:
            for fault in self._faults:
                if fault.path in path and fault.count > 0 and (applies is None or applies(fault)):
                    if fault.after > 0:
                        fault.after -= 1
                        continue
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)


class BackgroundServer:
    """A threaded HTTPS WSGI server on loopback, run in a daemon thread.

    Subclasses implement ``handle(request) -> Response``. Use as a context manager or call
    ``start()`` / ``stop()``. ``port=0`` picks a free port; ``url`` tells which.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, ca: LocalCA | None = None) -> None:
        self.host = host
        self.requested_port = port
        self._own_ca = ca is None  # a CA made for this server alone goes when it stops
        self.ca = ca or LocalCA()
        self.faults = FaultQueue()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return self._server.server_port

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def ca_path(self) -> Path:
        return self.ca.ca_path

    def start(self) -> BackgroundServer:
        self._server = make_server(
            self.host,
            self.requested_port,
            self._wsgi,
            threaded=True,
            request_handler=_QuietHandler,
            ssl_context=self.ca.server_context(),
        )
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._own_ca:
            self.ca.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling ------------------------------------------------------------------
    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        fault = self.faults.take(self.fault_path(request), lambda f: self.fault_applies(request, f))
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            response = self.fault_response(request, fault)
            if response is None:
                response = self.handle(request)
        else:
            response = self.handle(request)
        return response(environ, start_response)

    def fault_path(self, request: Request) -> str:
        """What a fault's ``path`` is matched against: the request path (subclasses may widen it)."""
        return str(request.path)

    def fault_applies(self, request: Request, fault: Fault) -> bool:
        """Whether ``fault`` may hit this request; subclasses narrow it (admin paths, kinds)."""
        return True

    def fault_response(self, request: Request, fault: Fault) -> Response | None:
        """Turn an injected fault into a response; ``None`` handles the request normally."""
        if fault.status is None:
            return None
        body = fault.body if fault.body is not None else ""
        if not isinstance(body, (str, bytes)):
            return Response(
                json.dumps(body),
                status=fault.status,
                headers=fault.headers,
                content_type="application/json",
            )
        return Response(body, status=fault.status, headers=fault.headers)

    def handle(self, request: Request) -> Response:
        raise NotImplementedError
