"""What both emulators share: a per-run certificate authority and a background HTTPS server.

The server is cheroot's WSGI server, because it keeps HTTP/1.1 connections open between
requests as Salesforce and Amplitude do (persistent connections are HTTP/1.1's default, RFC 9112
section 9.3; both services answer without ``Connection: close``). Werkzeug's development server,
used before, closes every connection, so each request paid a TCP and TLS handshake on both sides
that real runs never pay, and the benchmarks measured handshakes.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import random
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import trustme
from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
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

    def ssl_adapter(self) -> BuiltinSSLAdapter:
        """Cheroot's TLS adapter, presenting the certificate of :meth:`server_context`.

        The adapter reads the certificate and key from files: they are written to a private
        folder, removed at once (the adapter keeps what it loaded).
        """
        folder = Path(tempfile.mkdtemp(prefix="groups-emulators-key-"))
        try:
            cert, key = folder / "cert.pem", folder / "key.pem"
            self._cert.cert_chain_pems[0].write_to_path(str(cert))
            self._cert.private_key_pem.write_to_path(str(key))
            adapter = BuiltinSSLAdapter(str(cert), str(key))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        adapter.context = self.server_context()
        return adapter


SOCKET_KEY = "emulator.socket"  # the WSGI environ key of the request's connection


class _Gateway(wsgi.Gateway_10):
    """Cheroot's WSGI gateway, also handing the app the connection (to drop it, as a fault)."""

    def get_environ(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environ()
        environ[SOCKET_KEY] = self.req.conn.socket
        return environ


class _Server(wsgi.Server):
    """Cheroot's threaded WSGI server: quiet, except for errors of the emulator's own code."""

    # Threads wait out the latency switch and delay faults, so the pool grows when busy.
    MIN_THREADS = 16
    MAX_THREADS = 512

    def __init__(self, bind_addr: tuple[str, int], app: Callable[..., Any]) -> None:
        super().__init__(
            bind_addr,
            app,
            numthreads=self.MIN_THREADS,
            max=self.MAX_THREADS,
            request_queue_size=128,
            # Idle connections close after this; an answer is never held this long.
            timeout=60,
            shutdown_timeout=2,
        )
        self.gateway = _Gateway

    def error_log(self, msg: str = "", level: int = 20, traceback: bool = False) -> None:
        """Tracebacks of the emulator's code go to stderr; connection chatter is dropped.

        A client that hangs up while its answer is written (a tap that stops reading, a test's
        cut connection) is chatter too: cheroot reports it with the write's traceback.
        """
        if traceback and not isinstance(sys.exc_info()[1], _HUNG_UP):
            print(f"emulator error: {msg}", file=sys.stderr)
            _print_exception()

    def grow_if_busy(self) -> None:
        """More threads when few are idle (cheroot's pool does not grow by itself)."""
        pool = self.requests
        if pool.idle < 4:
            pool.grow(self.MIN_THREADS)


# The client went away mid-answer: TLS closed without its notice, or the socket reset or closed.
_HUNG_UP = (
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
)


def _print_exception() -> None:
    traceback.print_exc(file=sys.stderr)


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


@dataclass(frozen=True)
class Latency:
    """A delay added to each request the emulator counts as a round trip (a query page, an API request).

    ``seconds`` on average, spread evenly over ``seconds ± jitter`` (never below 0).

    Real services answer in 100-300 ms; loopback answers in well under 1 ms, which hides
    whether a client overlaps its waits. ``make bench`` uses this to measure that.
    """

    seconds: float = 0.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not (self.seconds >= 0 and self.jitter >= 0):  # also refuses NaN
            raise ValueError("latency seconds and jitter must be non-negative numbers")

    def draw(self, rng: random.Random) -> float:
        """One request's delay."""
        if not self.jitter:
            return self.seconds
        return max(0.0, self.seconds + rng.uniform(-self.jitter, self.jitter))


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


EPOCH_KEY = "emulator.epoch"  # the WSGI environ key of the epoch a request arrived in
DUE_KEY = "emulator.due"  # ... and of when its answer is due (monotonic), under the latency switch


class BackgroundServer:
    """A threaded HTTPS WSGI server on loopback, run in a daemon thread.

    Subclasses implement ``handle(request) -> Response``. Use as a context manager or call
    ``start()`` / ``stop()``. ``port=0`` picks a free port; ``url`` tells which.
    """

    # False: the latency switch sleeps before handling, so the emulator's own work comes on top.
    # True: the answer is held until the latency has passed since arrival, so the latency is the
    # whole response time, as a real service's is (work longer than it is not shortened).
    latency_includes_handling = False

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, ca: LocalCA | None = None) -> None:
        self.host = host
        self.requested_port = port
        self._own_ca = ca is None  # a CA made for this server alone goes when it stops
        self.ca = ca or LocalCA()
        self.faults = FaultQueue()
        # A reset starts a new epoch: requests of the old one (a delayed answer still pending)
        # are released at once and left out of the new epoch's request log.
        self._epoch = 0
        self._epoch_over = threading.Event()
        self.latency = Latency()
        self._rng = random.Random()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.bind_addr[1])

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def ca_path(self) -> Path:
        return self.ca.ca_path

    def start(self) -> Self:
        server = _Server((self.host, self.requested_port), self._wsgi)
        server.ssl_adapter = self.ca.ssl_adapter()
        ready = threading.Event()
        failed: list[BaseException] = []

        def serve() -> None:
            # Prepared in this daemon thread, so that the pool's workers inherit its daemon flag:
            # an emulator nobody stopped never keeps the process from exiting.
            try:
                server.prepare()  # binds: with port 0, bind_addr then holds the port picked
            except BaseException as exc:
                failed.append(exc)
                return
            finally:
                ready.set()
            server.serve()

        self._thread = threading.Thread(target=serve, daemon=True, name=type(self).__name__)
        self._thread.start()
        ready.wait()
        if failed:
            self._thread = None
            raise failed[0]
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self.new_epoch()  # release requests waiting on a delay fault
            self._server.stop()  # closes the listening socket and every open connection
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._own_ca:
            self.ca.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def new_epoch(self) -> None:
        """Called by ``reset``: release delayed requests and keep them out of the log from now."""
        released, self._epoch_over = self._epoch_over, threading.Event()
        self._epoch += 1
        released.set()

    def current(self, request: Request) -> bool:
        """Whether ``request`` arrived since the last reset (only those are logged)."""
        return self.current_epoch(request.environ.get(EPOCH_KEY))

    def current_epoch(self, epoch: object) -> bool:
        """Whether ``epoch`` (a request's ``environ[EPOCH_KEY]``) is the one since the last reset."""
        return epoch == self._epoch

    def set_latency(self, seconds: float = 0.0, jitter: float = 0.0) -> None:
        """Delay every request ``latency_applies`` to by ``seconds ± jitter`` (0 turns it off)."""
        self.latency = Latency(float(seconds), float(jitter))

    # -- request handling ------------------------------------------------------------------
    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ[EPOCH_KEY] = self._epoch
        if self._server is not None:
            self._server.grow_if_busy()
        start_response = self._dated(start_response)
        request = Request(environ)
        latency = self.latency
        if (latency.seconds or latency.jitter) and self.latency_applies(request):
            delay = latency.draw(self._rng)
            if self.latency_includes_handling:
                environ[DUE_KEY] = time.monotonic() + delay  # held back in hold_until_due
            else:
                time.sleep(delay)  # each request has its own thread: others go on
        fault = self.faults.take(self.fault_path(request), lambda f: self.fault_applies(request, f))
        if fault is not None:
            if fault.delay:
                self._epoch_over.wait(fault.delay)  # a reset ends the wait
                if DUE_KEY in environ:
                    environ[DUE_KEY] += fault.delay  # a slow response comes on top of the latency
            response = self.fault_response(request, fault)
            if response is None:
                response = self.handle(request)
        else:
            response = self.handle(request)
        self.hold_until_due(request)
        return response(environ, start_response)

    @staticmethod
    def hold_until_due(request: Request) -> None:
        """Wait until the request's latency has passed since it arrived (once; at once without one).

        With ``latency_includes_handling`` the emulator's own work counts toward the latency.
        Subclasses call it before they log a request as answered.
        """
        due = request.environ.pop(DUE_KEY, None)
        if due is not None:
            remaining = due - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)  # each request has its own thread: others go on

    def _dated(self, start_response: Callable[..., Any]) -> Callable[..., Any]:
        """``start_response`` adding the ``Date`` header by the emulator's clock.

        Tests may set that clock apart from ours (``clock_offset``); the server would otherwise
        write its own ``Date`` by the real one.
        """

        def dated(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if not any(name.lower() == "date" for name, _ in headers):
                offset = float(getattr(self, "clock_offset", 0.0) or 0.0)
                headers = [*headers, ("Date", email.utils.formatdate(time.time() + offset, usegmt=True))]
            return start_response(status, headers, exc_info)

        return dated

    @staticmethod
    def drop_connection(request: Request) -> None:
        """Shut the request's connection before any byte of the answer, as a network reset does."""
        sock = request.environ.get(SOCKET_KEY)
        if sock is not None:
            with contextlib.suppress(OSError):  # already gone
                sock.shutdown(socket.SHUT_RDWR)

    def fault_path(self, request: Request) -> str:
        """What a fault's ``path`` is matched against: the request path (subclasses may widen it)."""
        return str(request.path)

    def fault_applies(self, request: Request, fault: Fault) -> bool:
        """Whether ``fault`` may hit this request; subclasses narrow it (admin paths, kinds)."""
        return True

    def latency_applies(self, request: Request) -> bool:
        """Whether the latency switch delays this request; subclasses say which are round trips."""
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
