"""Emulator of Amplitude's Group Identify API (``POST /groupidentify``), strict by design.

It follows the Group Identify contract in the project's Amplitude API reference notes,
section (a): a form-urlencoded body with ``api_key`` and ``identification`` (a JSON string),
the documented per-request limits, the $set and $unset operations, and the project limits
that Amplitude applies silently (strings truncated, a 6th group type dropped, properties past
the project limit not indexed). Every request is atomic: one invalid identification rejects
the whole request and nothing is applied, which is what a client that bisects on 400 relies on.

Inspection and control go through the Python API or the admin endpoints under
``/__emulator/``; faults come from ``emulator.faults`` (see ``emulators._server.Fault``) or
``POST /__emulator/faults``. Run it alone with ``python -m emulators.amplitude``.
"""

from __future__ import annotations

import argparse
import collections
import copy
import hmac
import json
import math
import signal
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any, BinaryIO

from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request, Response

from emulators._server import EPOCH_KEY, BackgroundServer, Fault, LocalCA

API_KEY = "emulator-api-key"

MAX_BODY_BYTES = 1_000_000
MAX_IDENTIFICATIONS = 1024
MAX_PROPERTIES_PER_REQUEST = 1024
MAX_STRING_LENGTH = 1024
MAX_DEPTH = 40

IDENTIFY_PATHS = frozenset({"/groupidentify", "/groupidentify/"})
ADMIN_PREFIX = "/__emulator/"
FORM_TYPE = "application/x-www-form-urlencoded"
TEXT = "text/plain; charset=utf-8"

OPERATIONS = ("$set", "$unset")
# Documented for /groupidentify, but the target never sends them (they are not idempotent, or
# not needed), so they are not emulated: a client that starts sending them must notice here.
NOT_EMULATED = ("$setOnce", "$add", "$append", "$prepend", "$clearAll")
KNOWN_IDENTIFICATION_KEYS = frozenset({"group_type", "group_value", "group_properties", "library"})
KNOWN_FORM_PARAMETERS = frozenset({"api_key", "identification", "options"})
FAULT_KINDS = frozenset({"body_429", "disconnect"})

THROTTLED_BODY = {"code": 429, "error": "Too many requests for some devices and users"}
TOO_LARGE_BODY = {"code": 413, "error": "Payload too large"}

_START = "amplitude_emulator.start"
_ARRIVED = "amplitude_emulator.arrived"


class Rejected(Exception):
    """A request answered with an error status; nothing of it is applied."""

    def __init__(
        self,
        status: int,
        body: str | dict[str, Any],
        reason: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.reason = reason or (body if isinstance(body, str) else json.dumps(body))
        self.headers = headers or {}
        super().__init__(self.reason)

    def response(self) -> Response:
        if isinstance(self.body, str):
            return Response(self.body, status=self.status, headers=self.headers, content_type=TEXT)
        return Response(
            json.dumps(self.body),
            status=self.status,
            headers=self.headers,
            content_type="application/json",
        )


def _bad(reason: str) -> Rejected:
    """A 400 whose plain-text body is the reason."""
    return Rejected(400, reason)


@dataclass
class Identification:
    """One validated identification, its properties normalised to operations."""

    index: int
    group_type: str
    group_value: str
    operations: dict[str, dict[str, Any]]
    property_count: int


class TokenBucket:
    """Identifications-per-second limiter, like Amplitude's org-wide group identify cap.

    A request needs ``min(n, capacity)`` tokens and then takes ``n``, so a batch larger than
    the bucket passes when it is full and the debt slows later requests: the long-run rate
    holds and no batch size is refused forever.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0 or (burst is not None and burst <= 0):
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.capacity = burst if burst is not None else max(rate, 1.0)
        self.tokens = self.capacity
        self.updated = time.monotonic()

    def take(self, n: int) -> float:
        """Take ``n`` tokens; return 0.0 if granted, else the seconds to wait before retrying."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        need = min(float(n), self.capacity)
        if self.tokens >= need:
            self.tokens -= n
            return 0.0
        return (need - self.tokens) / self.rate


# -- validation (pure functions: no state, run outside the lock) ------------------------------


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN and Infinity by default; they are not JSON.
    raise ValueError(f"{name} is not valid JSON")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_value(value: object, path: str, depth: int, where: str) -> None:
    """Reject nulls, nested arrays and objects deeper than ``MAX_DEPTH`` inside a value."""
    if value is None:
        raise _bad(f"invalid group_properties: null value for '{path}' in {where}")
    if isinstance(value, (list, dict)):
        depth += 1
        if depth > MAX_DEPTH:
            raise _bad(f"invalid group_properties: depth over {MAX_DEPTH} in '{path}' in {where}")
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, list):
                raise _bad(f"invalid group_properties: nested array in '{path}' in {where}")
            _check_value(item, f"{path}[{i}]", depth, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_value(item, f"{path}.{key}", depth, where)


def _check_properties(props: dict[str, Any], where: str) -> None:
    for name, value in props.items():
        if name == "":
            raise _bad(f"invalid group_properties: empty property name in {where}")
        _check_value(value, name, 0, where)


def validate_identification(index: int, obj: object) -> tuple[Identification, list[str]]:
    """Validate one identification; return it normalised plus warnings, or raise ``Rejected``."""
    where = f"identification {index}"
    if not isinstance(obj, dict):
        raise _bad(f"invalid identification: not a JSON object in {where}")
    warnings = [f"unknown key '{key}' in {where}" for key in obj if key not in KNOWN_IDENTIFICATION_KEYS]

    for field_name in ("group_type", "group_value"):
        value = obj.get(field_name)
        if not isinstance(value, str):
            raise _bad(f"invalid {field_name}: missing or not a string in {where}")
        if value == "":
            raise _bad(f"invalid {field_name}: empty string in {where}")
        if len(value) > MAX_STRING_LENGTH:
            # Truncating an id would merge distinct groups, so this one is refused.
            raise _bad(f"invalid {field_name}: longer than {MAX_STRING_LENGTH} characters in {where}")

    if "group_properties" not in obj:
        raise _bad(f"invalid group_properties: missing in {where}")
    props = obj["group_properties"]
    if not isinstance(props, dict):
        raise _bad(f"invalid group_properties: not an object in {where}")

    op_keys = [key for key in props if key.startswith("$")]
    if op_keys and len(op_keys) != len(props):
        raise _bad(f"invalid group_properties: mixes operations and plain properties in {where}")

    operations: dict[str, dict[str, Any]] = {}
    count = 0
    if not op_keys:
        _check_properties(props, where)
        operations["$set"] = props
        count = len(props)
    for op in op_keys:
        if op in NOT_EMULATED:
            raise _bad(f"operation '{op}' is not emulated (the target sends only $set and $unset) in {where}")
        if op not in OPERATIONS:
            raise _bad(f"invalid group_properties: unknown operation '{op}' in {where}")
        value = props[op]
        if not isinstance(value, dict):
            raise _bad(f"invalid group_properties: '{op}' must be an object in {where}")
        _check_properties(value, where)
        operations[op] = value
        count += len(value)

    seen: set[str] = set()
    for op_props in operations.values():
        for name in op_props:
            if name in seen:
                raise _bad(f"invalid group_properties: '{name}' used in more than one operation in {where}")
            seen.add(name)

    ident = Identification(
        index=index,
        group_type=obj["group_type"],
        group_value=obj["group_value"],
        operations=operations,
        property_count=count,
    )
    return ident, warnings


def _truncate(value: Any) -> tuple[Any, int]:
    """Return a copy of ``value`` with every string cut to 1024 characters, and how many were."""
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            return value[:MAX_STRING_LENGTH], 1
        return value, 0
    if isinstance(value, list):
        out_list, total = [], 0
        for item in value:
            cut, n = _truncate(item)
            out_list.append(cut)
            total += n
        return out_list, total
    if isinstance(value, dict):
        out_dict, total = {}, 0
        for key, item in value.items():
            out_dict[key], n = _truncate(item)
            total += n
        return out_dict, total
    return value, 0


def _read_capped(stream: BinaryIO, cap: int) -> bytes | None:
    """Read the whole stream, or return None as soon as it is longer than ``cap`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)


_DISCARD_LIMIT = 64_000_000  # beyond this much, a client still sending sees the connection close


def _discard(stream: BinaryIO) -> None:
    """Read what is left of a request body, up to ``_DISCARD_LIMIT`` bytes."""
    read = 0
    while read < _DISCARD_LIMIT and (chunk := stream.read(65536)):
        read += len(chunk)


# -- the emulator -------------------------------------------------------------------------------


class AmplitudeEmulator(BackgroundServer):
    """HTTPS emulator of ``POST /groupidentify`` with state, a request log, metrics and faults.

    One instance is one Amplitude project in one region: the EU host serves the same path, so
    run a second instance to test region selection.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ca: LocalCA | None = None,
        api_keys: Sequence[str] = (API_KEY,),
        max_group_types: int = 5,
        max_properties: int = 1000,
        log_limit: int = 10_000,
        keep_payloads: bool = True,
    ) -> None:
        super().__init__(host=host, port=port, ca=ca)
        self._api_keys = tuple(api_keys)
        self.max_group_types = max_group_types
        self.max_properties = max_properties
        self.keep_payloads = keep_payloads
        # One lock guards state, log, metrics and the rate limiter: a request is validated
        # against and applied to a consistent snapshot, and its metrics land with it.
        self._lock = threading.Lock()
        self._log: collections.deque[dict[str, Any]] = collections.deque(maxlen=log_limit)
        self._groups: dict[str, dict[str, dict[str, Any]]] = {}
        self._property_names: set[str] = set()
        self._unindexed: set[str] = set()
        self._dropped_types: set[str] = set()
        self._counters: collections.Counter[str] = collections.Counter()
        self._bucket: TokenBucket | None = None
        self._failing: tuple[frozenset[str], int] | None = None  # fail_requests_carrying

    # -- Python API -----------------------------------------------------------------------------
    def groups(self, group_type: str | None = None) -> dict[str, dict[str, dict[str, Any]]]:
        """Current properties: ``{group_type: {group_value: {property: value}}}`` (a deep copy)."""
        with self._lock:
            if group_type is None:
                return copy.deepcopy(self._groups)
            if group_type not in self._groups:
                return {}
            return {group_type: copy.deepcopy(self._groups[group_type])}

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The request log, oldest first (copies). The API key itself is never stored."""
        with self._lock:
            return copy.deepcopy(list(self._log))

    def metrics(self) -> dict[str, Any]:
        """Counters since the last reset, plus the names behind the silent-limit counters."""
        with self._lock:
            c = self._counters
            return {
                "requests": c["requests"],
                "accepted": c["accepted"],
                "rejected": c["rejected"],
                "throttled": c["throttled"],
                "server_errors": c["server_errors"],
                "disconnected": c["disconnected"],
                "identifications_applied": c["identifications_applied"],
                "truncated_strings": c["truncated_strings"],
                "dropped_group_types": len(self._dropped_types),
                "dropped_group_type_names": sorted(self._dropped_types),
                "dropped_identifications": c["dropped_identifications"],
                "unindexed_properties": len(self._unindexed),
                "unindexed_property_names": sorted(self._unindexed),
                "group_types": sorted(self._groups),
                "rate_limit": self._bucket.rate if self._bucket else None,
                "latency": vars(self.latency),
            }

    def reset(self) -> None:
        """Forget state, log, metrics, pending faults, the rate limit and the latency."""
        self.new_epoch()
        with self._lock:
            self._log.clear()
            self._groups.clear()
            self._property_names.clear()
            self._unindexed.clear()
            self._dropped_types.clear()
            self._counters.clear()
            self._bucket = None
            self._failing = None
        self.faults.clear()
        self.set_latency(0.0)

    def fail_requests_carrying(self, group_values: Iterable[str], status: int = 503) -> None:
        """Answer ``status`` to every request carrying one of these group values, whenever it comes.

        A :class:`Fault` hits requests in the order they arrive, which requests in flight at
        once do not keep; this picks them by what they carry, so a test can fail one batch's
        requests while the others, sent at the same time, pass. ``reset`` ends it.
        """
        with self._lock:
            self._failing = (frozenset(group_values), status)

    def set_rate_limit(self, identifications_per_second: float | None, burst: float | None = None) -> None:
        """Answer 429 past this many identifications per second; ``None`` removes the limit.

        ``burst`` is the bucket size (default: one second's worth).
        """
        bucket = None
        if identifications_per_second is not None:
            bucket = TokenBucket(identifications_per_second, burst)
        with self._lock:
            self._bucket = bucket

    # -- request plumbing -----------------------------------------------------------------------
    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ[_START] = time.monotonic()
        environ[_ARRIVED] = time.time()
        # Admin calls bypass fault injection: a catch-all fault must hit the API, not the test
        # harness that set it up.
        if environ.get("PATH_INFO", "").startswith(ADMIN_PREFIX):
            return self._admin(Request(environ))(environ, start_response)
        return super()._wsgi(environ, start_response)

    def fault_path(self, request: Request) -> str:
        """Match faults against the path and query string.

        A client whose URL carries a query (``?shard=account``, as a proxy's route might) can then
        be given faults of its own while others share the endpoint.
        """
        return str(request.full_path)

    def _admin(self, request: Request) -> Response:
        return _admin_route(self, request)

    def handle(self, request: Request) -> Response:
        entry = self._new_entry(request)
        try:
            response = self._groupidentify(request, entry)
        except Rejected as exc:
            entry["error"] = exc.reason
            response = exc.response()
        except Exception:
            traceback.print_exc()
            entry["error"] = "emulator error"
            response = Response("emulator error", status=500, content_type=TEXT)
        self._record(entry, response)
        return response

    def fault_response(self, request: Request, fault: Fault) -> Response | None:
        if fault.status is None and fault.kind is None:
            return None  # a delay alone: the request is then handled normally, just late
        entry = self._new_entry(request)
        entry["fault"] = fault.kind or str(fault.status)
        self._inspect(request, entry)
        body = fault.body
        if fault.kind == "body_429":
            response = Response(
                json.dumps(THROTTLED_BODY if body is None else body),
                status=fault.status or 200,
                headers=fault.headers,
                content_type="application/json",
            )
        elif fault.kind == "disconnect":
            response = Response(b"", status=fault.status or 500)  # never sent, see below
        elif fault.kind is not None:
            response = Response(f"emulator: unknown fault kind {fault.kind!r}", status=500, content_type=TEXT)
        else:
            status = fault.status or 500
            if body is None:
                if status in (413, 429):
                    body = TOO_LARGE_BODY if status == 413 else THROTTLED_BODY
                else:
                    body = HTTP_STATUS_CODES.get(status, "error")
            if isinstance(body, (str, bytes)):
                response = Response(body, status=status, headers=fault.headers, content_type=TEXT)
            else:
                response = Response(
                    json.dumps(body),
                    status=status,
                    headers=fault.headers,
                    content_type="application/json",
                )
        self._record(entry, response)
        if fault.kind == "disconnect":
            # Shut the socket before any byte of response (after logging, so the log is
            # complete when the client notices): the client sees the connection dropped, and
            # the server treats its own failed write as a dropped connection.
            self.drop_connection(request)
        return response

    def _new_entry(self, request: Request) -> dict[str, Any]:
        return {
            "time": time.time(),
            "arrived": request.environ.get(_ARRIVED),  # before the latency and the handling
            "method": request.method,
            "path": request.path,
            "query": request.query_string.decode("latin-1"),
            "status": None,
            "body_bytes": request.content_length,
            "content_type": request.headers.get("Content-Type"),
            "api_key_valid": None,
            "identifications": None,
            "properties": None,
            "error": None,
            "warnings": [],
            "fault": None,
            "applied": False,
            "latency": None,
            "payload": None,
            "_start": request.environ.get(_START, time.monotonic()),
            "_epoch": request.environ.get(EPOCH_KEY),
        }

    def _record(self, entry: dict[str, Any], response: Response) -> None:
        # A dropped connection sent no status at all; logging its placeholder would mislead.
        dropped = entry["fault"] == "disconnect"
        entry["status"] = None if dropped else response.status_code
        entry["latency"] = round(time.monotonic() - entry.pop("_start"), 6)
        if dropped:
            outcome = "disconnected"
        elif entry["applied"]:
            outcome = "accepted"
        elif response.status_code == 429 or entry["fault"] == "body_429":
            outcome = "throttled"
        elif response.status_code >= 500:
            outcome = "server_errors"
        elif response.status_code >= 400:
            outcome = "rejected"
        else:
            outcome = None  # e.g. a fault answering 200 without applying anything
        if not self.current_epoch(entry.pop("_epoch")):
            return  # arrived before the last reset: not this test's request
        with self._lock:
            self._counters["requests"] += 1
            if outcome:
                self._counters[outcome] += 1
            self._log.append(entry)

    def _inspect(self, request: Request, entry: dict[str, Any]) -> None:
        """Fill a faulted request's log entry as far as it parses, without judging it."""
        try:
            form = self._read_form(request, entry)
            self._check_key(form, entry)
            self._parse_identification(form, entry)
        except Rejected:
            pass

    # -- the API --------------------------------------------------------------------------------
    def _groupidentify(self, request: Request, entry: dict[str, Any]) -> Response:
        if request.path not in IDENTIFY_PATHS:
            raise Rejected(404, "not found")
        if request.method != "POST":
            raise Rejected(405, "method not allowed: use POST", headers={"Allow": "POST"})
        form = self._read_form(request, entry)
        self._check_key(form, entry)
        raw = self._parse_identification(form, entry)

        if len(raw) > MAX_IDENTIFICATIONS:
            raise _bad(f"too many identifications: {len(raw)} (limit {MAX_IDENTIFICATIONS})")
        idents: list[Identification] = []
        for index, obj in enumerate(raw):
            ident, warnings = validate_identification(index, obj)
            idents.append(ident)
            entry["warnings"].extend(warnings)
        failing = self._failing
        if failing is not None and any(ident.group_value in failing[0] for ident in idents):
            raise Rejected(failing[1], "emulator: this request carries a group set to fail")
        total = sum(ident.property_count for ident in idents)
        entry["properties"] = total
        if total > MAX_PROPERTIES_PER_REQUEST:
            raise _bad(f"too many group properties: {total} (limit {MAX_PROPERTIES_PER_REQUEST})")

        self._apply(idents, entry)
        return Response("success", status=200, content_type=TEXT)

    def _read_form(self, request: Request, entry: dict[str, Any]) -> dict[str, str]:
        # Size first, before anything is parsed, as the real API answers 413 on size alone.
        declared = request.content_length
        data = (
            None
            if declared is not None and declared > MAX_BODY_BYTES
            else _read_capped(request.stream, MAX_BODY_BYTES)
        )
        if data is None:
            # Read the rest before answering, as a front server's lingering close does: the
            # client is still sending, and would otherwise see a reset instead of the 413.
            _discard(request.stream)
            raise Rejected(413, TOO_LARGE_BODY, reason="payload too large")
        entry["body_bytes"] = len(data)

        if request.mimetype != FORM_TYPE:
            raise _bad(f"invalid content type: expected {FORM_TYPE}")
        if "api_key" in request.args or "identification" in request.args:
            # Keys in URLs end up in proxy and server logs; the contract puts them in the body.
            raise _bad("invalid request: api_key and identification belong in the body")
        charset = request.mimetype_params.get("charset", "utf-8")
        try:
            text = data.decode(charset)
            pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, encoding=charset, errors="strict")
        except (LookupError, UnicodeDecodeError, ValueError):
            raise _bad(f"invalid form body: not {charset} form-urlencoded data") from None
        form: dict[str, str] = {}
        for name, value in pairs:
            if name in form and name in KNOWN_FORM_PARAMETERS:
                raise _bad(f"invalid form body: duplicate parameter '{name}'")
            if name not in KNOWN_FORM_PARAMETERS:
                entry["warnings"].append(f"unknown parameter '{name}'")
            form[name] = value
        return form

    def _check_key(self, form: dict[str, str], entry: dict[str, Any]) -> None:
        key = form.get("api_key", "")
        valid = any(hmac.compare_digest(key.encode(), k.encode()) for k in self._api_keys)
        entry["api_key_valid"] = valid
        if not valid:
            raise _bad("invalid_api_key")

    def _parse_identification(self, form: dict[str, str], entry: dict[str, Any]) -> list[Any]:
        text = form.get("identification")
        if text is None or not text.strip():
            raise Rejected(400, "missing_event", reason="missing_event: no identification")
        try:
            parsed = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise Rejected(
                400, "missing_event", reason="missing_event: identification is not valid JSON"
            ) from None
        items = parsed if isinstance(parsed, list) else [parsed]
        if not isinstance(parsed, (list, dict)) or not items:
            raise Rejected(
                400,
                "missing_event",
                reason="missing_event: identification is not an object or a non-empty array",
            )
        entry["identifications"] = len(items)
        if self.keep_payloads:
            entry["payload"] = items
        return items

    def _apply(self, idents: list[Identification], entry: dict[str, Any]) -> None:
        """Apply all identifications in order, or none of them (raise ``Rejected``)."""
        with self._lock:
            if self._bucket is not None:
                wait = self._bucket.take(len(idents))
                if wait:
                    raise Rejected(
                        429,
                        THROTTLED_BODY,
                        reason="throttled: rate limit",
                        headers={"Retry-After": str(max(1, math.ceil(wait)))},
                    )
            # Work on copies of the touched groups, commit only if every one succeeds.
            scratch: dict[tuple[str, str], dict[str, Any]] = {}
            new_types: list[str] = []
            dropped_types: set[str] = set()
            written: set[str] = set()
            dropped = truncated = 0
            for ident in idents:
                gtype = ident.group_type
                if gtype not in self._groups and gtype not in new_types:
                    if len(self._groups) + len(new_types) >= self.max_group_types:
                        # Amplitude accepts these with a 200 and does not track them.
                        dropped += 1
                        dropped_types.add(gtype)
                        continue
                    new_types.append(gtype)
                key = (gtype, ident.group_value)
                if key not in scratch:
                    current = self._groups.get(gtype, {}).get(ident.group_value, {})
                    scratch[key] = copy.deepcopy(current)
                truncated += _apply_operations(scratch[key], ident, written)

            for (gtype, gvalue), props in scratch.items():
                self._groups.setdefault(gtype, {})[gvalue] = props
            for name in sorted(written - self._property_names):
                if len(self._property_names) - len(self._unindexed) >= self.max_properties:
                    self._unindexed.add(name)  # stored, but past the project's indexed limit
                self._property_names.add(name)
            self._dropped_types |= dropped_types
            self._counters["identifications_applied"] += len(idents) - dropped
            self._counters["dropped_identifications"] += dropped
            self._counters["truncated_strings"] += truncated
            entry["applied"] = True
            if dropped:
                entry["warnings"].append(
                    f"{dropped} identification(s) of group type(s) past the limit of "
                    f"{self.max_group_types} dropped: {sorted(dropped_types)}"
                )


def _apply_operations(props: dict[str, Any], ident: Identification, written: set[str]) -> int:
    """Apply one identification to ``props`` in place; return how many strings were truncated."""
    truncated = 0
    for op, values in ident.operations.items():
        for name, raw in values.items():
            if op == "$unset":
                props.pop(name, None)
                continue
            value, n = _truncate(raw)
            truncated += n
            written.add(name)
            props[name] = value
    return truncated


# -- admin endpoints ----------------------------------------------------------------------------

_FAULT_FIELDS = {f.name for f in fields(Fault)}


def fault_from_json(obj: object) -> Fault:
    """Build a ``Fault`` from the admin endpoint's JSON, or raise ``ValueError``."""
    if not isinstance(obj, dict):
        raise ValueError("a fault is a JSON object")
    unknown = set(obj) - _FAULT_FIELDS
    if unknown:
        raise ValueError(f"unknown fault fields: {sorted(unknown)}")
    status = obj.get("status")
    if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
        raise ValueError("status must be an HTTP status code or null")
    count = obj.get("count", 1)
    if not isinstance(count, int) or count < 1:
        raise ValueError("count must be a positive integer")
    delay = obj.get("delay", 0.0)
    if not _is_number(delay) or delay < 0:
        raise ValueError("delay must be a non-negative number of seconds")
    path = obj.get("path", "")
    if not isinstance(path, str):
        raise ValueError("path must be a string")
    headers = obj.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ValueError("headers must be an object of strings")
    kind = obj.get("kind")
    if kind is not None and kind not in FAULT_KINDS:
        raise ValueError(f"kind must be one of {sorted(FAULT_KINDS)} or null")
    return Fault(
        status=status,
        count=count,
        path=path,
        delay=float(delay),
        body=obj.get("body"),
        headers=headers,
        kind=kind,
    )


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, content_type="application/json")


def _admin_route(emulator: AmplitudeEmulator, request: Request) -> Response:
    """Serve one ``/__emulator/...`` call (no auth: loopback test harness only)."""
    route = request.path[len(ADMIN_PREFIX) :].rstrip("/")
    method = request.method
    if route == "groups" and method == "GET":
        return _json(emulator.groups(request.args.get("group_type")))
    if route == "requests" and method == "GET":
        return _json(emulator.requests)
    if route == "metrics" and method == "GET":
        return _json(emulator.metrics())
    if route == "reset" and method == "POST":
        emulator.reset()
        return _json({"reset": True})
    if route == "faults" and method == "GET":
        return _json([vars(f) for f in emulator.faults.pending()])
    if route == "faults" and method == "POST":
        try:
            payload = json.loads(request.get_data(as_text=True))
            items = payload if isinstance(payload, list) else [payload]
            new = [fault_from_json(item) for item in items]
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        for fault in new:
            emulator.faults.add(fault)
        return _json([vars(f) for f in emulator.faults.pending()])
    if route == "rate-limit" and method == "POST":
        try:
            payload = json.loads(request.get_data(as_text=True) or "{}")
            rate = payload.get("identifications_per_second")
            burst = payload.get("burst")
            emulator.set_rate_limit(rate, burst)
        except (ValueError, AttributeError, TypeError) as exc:
            return _json({"error": str(exc)}, 400)
        return _json({"identifications_per_second": rate, "burst": burst})
    if route == "latency" and method == "POST":
        try:
            payload = json.loads(request.get_data(as_text=True) or "{}")
            emulator.set_latency(payload.get("seconds", 0.0), payload.get("jitter", 0.0))
        except (ValueError, AttributeError, TypeError) as exc:
            return _json({"error": str(exc)}, 400)
        return _json(vars(emulator.latency))
    if route in {"groups", "requests", "metrics", "reset", "faults", "rate-limit", "latency"}:
        return _json({"error": "method not allowed"}, 405)
    return _json({"error": "not found"}, 404)


# -- command line -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator in the foreground until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m emulators.amplitude", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8444)
    parser.add_argument("--ca-dir", help="where ca.pem is written (default: a new temp dir)")
    parser.add_argument("--api-key", action="append", help=f"accepted key, repeatable (default: {API_KEY})")
    parser.add_argument("--max-group-types", type=int, default=5)
    parser.add_argument("--max-properties", type=int, default=1000)
    parser.add_argument("--rate-limit", type=float, help="identifications per second")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each request")
    parser.add_argument("--latency-jitter", type=float, default=0.0, help="± seconds around --latency")
    args = parser.parse_args(argv)

    emulator = AmplitudeEmulator(
        host=args.host,
        port=args.port,
        ca=LocalCA(args.ca_dir),
        api_keys=tuple(args.api_key or (API_KEY,)),
        max_group_types=args.max_group_types,
        max_properties=args.max_properties,
    )
    if args.rate_limit:
        emulator.set_rate_limit(args.rate_limit)
    emulator.set_latency(args.latency, args.latency_jitter)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    emulator.start()
    print(
        f"amplitude emulator: {emulator.url}/groupidentify  ca={emulator.ca_path}",
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
        emulator.ca.close()
    metrics = emulator.metrics()
    print(
        f"amplitude emulator stopped: {metrics['requests']} requests, {metrics['accepted']} accepted",
        file=sys.stderr,
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
