"""Packing identifications into the fewest /groupidentify requests Amplitude's limits allow.

Limits per request (Amplitude Group Identify API): at most 1024 identifications, at most 1024
group properties in total, at most 1,000,000 bytes of encoded body.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Any
from urllib.parse import quote_plus

MAX_IDENTIFICATIONS = 1024
MAX_PROPERTIES = 1024
MAX_BODY_BYTES = 1_000_000

_ENCODED_SEPARATOR = quote_plus(",")
_SEPARATOR_BYTES = len(_ENCODED_SEPARATOR)
_ARRAY_BYTES = len(quote_plus("[]"))


# quote_plus of UTF-8 text, one table lookup per byte: a byte Amplitude's form decoding leaves
# alone ("A-Za-z0-9_.-~") stays, a space becomes "+", every other byte becomes "%XX". Text that
# is all safe characters (ids, most numbers) is returned as it is, after one regex check.
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_BYTE_ESCAPES = tuple(chr(b) if b in _SAFE else "+" if b == 0x20 else f"%{b:02X}" for b in range(256))
_escape_byte = _BYTE_ESCAPES.__getitem__
_all_safe = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch


def form_encode(text: str) -> str:
    """Exactly ``quote_plus(text)``, several times faster."""
    if _all_safe(text):
        return text
    return "".join(map(_escape_byte, text.encode("utf-8")))


def encode_identification(identification: dict[str, Any]) -> str:
    """Compact JSON, as it goes inside the ``identification`` array."""
    return json.dumps(identification, separators=(",", ":"), ensure_ascii=False)


# The form encoding of compact JSON, built value by value: quoting works character by
# character, so quote_plus(a + b) == quote_plus(a) + quote_plus(b), and the encoded keys (the
# same few property names in every identification) are kept rather than encoded again.
_QUOTE = form_encode('"')
_COLON = form_encode(":")
_COMMA = form_encode(",")
_OPEN, _CLOSE = form_encode("{"), form_encode("}")
_KEY_CACHE_LIMIT = 10_000
_encoded_keys: dict[str, str] = {}


def _encoded_key(key: str) -> str:
    encoded = _encoded_keys.get(key)
    if encoded is None:
        encoded = form_encode(encode_basestring(key)) + _COLON
        if len(_encoded_keys) < _KEY_CACHE_LIMIT:
            _encoded_keys[key] = encoded
    return encoded


# Text of letters, digits, "_.~-" and spaces needs no JSON escaping, and its form encoding only
# turns spaces into "+": most property values (names, picklist values, cities) are such text.
_plain_text = re.compile(r"[A-Za-z0-9_.~ -]*").fullmatch


def _encoded_value(value: Any) -> str:
    kind = type(value)
    if kind is str:
        text: str = value
        if _plain_text(text):
            return _QUOTE + text.replace(" ", "+") + _QUOTE
        return form_encode(encode_basestring(text))
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)  # digits and "-": nothing to escape
    if value is None:
        return "null"
    if kind is float and math.isfinite(value):
        return form_encode(float.__repr__(value))  # as json.dumps writes floats
    if kind is dict:
        return _encoded_object(value)
    return form_encode(json.dumps(value, separators=(",", ":"), ensure_ascii=False))  # the rest, as json


def _encoded_object(obj: dict[Any, Any]) -> str:
    parts = []
    for key, value in obj.items():
        encoded_key = _encoded_keys.get(key) if type(key) is str else None
        if encoded_key is None:
            if type(key) is not str:  # json.dumps turns such keys into strings its own way
                return form_encode(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))
            encoded_key = _encoded_key(key)
        if type(value) is str and _plain_text(value):  # the common case, without a call
            parts.append(encoded_key + _QUOTE + value.replace(" ", "+") + _QUOTE)
        else:
            parts.append(encoded_key + _encoded_value(value))
    return _OPEN + _COMMA.join(parts) + _CLOSE


def form_encode_identification(identification: dict[str, Any]) -> str:
    """Exactly ``form_encode(encode_identification(identification))``, about three times faster."""
    return _encoded_object(identification)


def property_count(identification: dict[str, Any]) -> int:
    """Group properties an identification carries, counting keys inside $set/$unset."""
    return sum(len(ops) for ops in identification["group_properties"].values())


def body_overhead(api_key: str) -> int:
    """Bytes of ``api_key=…&identification=[]``: everything but the identifications."""
    return len("api_key=") + len(quote_plus(api_key)) + len("&identification=") + _ARRAY_BYTES


@dataclass
class Item:
    """One identification, URL-encoded once, with its cost against each limit."""

    identification: dict[str, Any]
    encoded: str  # quote_plus of the compact JSON: exactly what goes into the body
    properties: int
    groups: int = 1  # 0 for the later parts of a group sent as several partial updates

    @property
    def encoded_bytes(self) -> int:
        return len(self.encoded)

    @classmethod
    def of(cls, identification: dict[str, Any]) -> Item:
        return cls(identification, form_encode_identification(identification), property_count(identification))


@dataclass
class Request:
    """Identifications that fit one request, with the request's running totals."""

    items: list[Item] = field(default_factory=list)
    properties: int = 0
    encoded_bytes: int = 0

    def fits(self, item: Item, overhead: int) -> bool:
        separator = _SEPARATOR_BYTES if self.items else 0
        return (
            len(self.items) < MAX_IDENTIFICATIONS
            and self.properties + item.properties <= MAX_PROPERTIES
            and overhead + self.encoded_bytes + separator + item.encoded_bytes <= MAX_BODY_BYTES
        )

    def add(self, item: Item) -> None:
        self.encoded_bytes += item.encoded_bytes + (_SEPARATOR_BYTES if self.items else 0)
        self.items.append(item)
        self.properties += item.properties

    def body(self, api_key: str) -> bytes:
        """The form-encoded body, joined from the items' encodings (nothing is encoded twice)."""
        joined = _ENCODED_SEPARATOR.join(i.encoded for i in self.items)
        return f"api_key={quote_plus(api_key)}&identification=%5B{joined}%5D".encode("ascii")

    @property
    def identification_param(self) -> str:
        """The ``identification`` form value, decoded: a JSON array of the items."""
        return "[" + ",".join(encode_identification(i.identification) for i in self.items) + "]"

    def split(self) -> tuple[Request, Request]:
        """Two halves (for 413 and for bisecting a 400)."""
        mid = len(self.items) // 2
        return Request.of(self.items[:mid]), Request.of(self.items[mid:])

    @classmethod
    def of(cls, items: Iterable[Item]) -> Request:
        request = cls()
        for item in items:
            request.add(item)
        return request


class OversizedValue(ValueError):
    """One property whose value alone does not fit in a request."""

    def __init__(self, identification: dict[str, Any], prop: str) -> None:
        super().__init__(f"property '{prop}' alone exceeds the {MAX_BODY_BYTES:,}-byte request limit")
        self.identification = identification
        self.property = prop


def split_oversized(identification: dict[str, Any], overhead: int, *, first: bool = True) -> Iterator[Item]:
    """Items for one group; a group too big for one request is sent as several partial updates.

    Only the first part counts as a group (``Item.groups``), so the summary counts groups.
    Raises :class:`OversizedValue` when a single property cannot fit in any request.
    """
    item = Item.of(identification)
    if item.properties <= MAX_PROPERTIES and overhead + item.encoded_bytes <= MAX_BODY_BYTES:
        item.groups = int(first)
        yield item
        return
    ops = [
        (op, key, value)
        for op, values in identification["group_properties"].items()
        for key, value in values.items()
    ]
    if len(ops) <= 1:
        raise OversizedValue(identification, ops[0][1] if ops else "")
    for n, half in enumerate((ops[: len(ops) // 2], ops[len(ops) // 2 :])):
        props: dict[str, dict[str, Any]] = {}
        for op, key, value in half:
            props.setdefault(op, {})[key] = value
        yield from split_oversized(
            {**identification, "group_properties": props}, overhead, first=first and n == 0
        )


def iter_pack(
    identifications: Iterable[dict[str, Any]],
    api_key: str,
    on_oversized: Callable[[OversizedValue], None] | None = None,
) -> Iterator[Request]:
    """Greedy packing in order, each request yielded as soon as it is full.

    For contiguous packing this gives the fewest requests. A property too large for any request
    is left out and reported to ``on_oversized`` (or raised without one); the rest of its group is sent.
    """
    overhead = body_overhead(api_key)
    current = Request()
    for identification in identifications:
        try:
            items = list(split_oversized(identification, overhead))
        except OversizedValue as exc:
            if on_oversized is None:
                raise
            on_oversized(exc)
            rest = {
                op: {k: v for k, v in values.items() if k != exc.property}
                for op, values in identification["group_properties"].items()
            }
            rest = {op: values for op, values in rest.items() if values}
            if not rest:
                continue
            items = list(split_oversized({**identification, "group_properties": rest}, overhead))
        for item in items:
            if not current.fits(item, overhead):
                yield current
                current = Request()
            current.add(item)
    if current.items:
        yield current


def pack(identifications: Iterable[dict[str, Any]], api_key: str) -> list[Request]:
    """Every request of :func:`iter_pack`, as a list."""
    return list(iter_pack(identifications, api_key))
