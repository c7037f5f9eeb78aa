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

from target_amplitude_groups.identify import merge_into

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
        """Bytes of the identification once form-encoded."""
        return len(self.encoded)

    @classmethod
    def of(cls, identification: dict[str, Any]) -> Item:
        """An item for one identification."""
        return cls(identification, form_encode_identification(identification), property_count(identification))


@dataclass
class Request:
    """Identifications that fit one request, with the request's running totals."""

    items: list[Item] = field(default_factory=list)
    properties: int = 0
    encoded_bytes: int = 0

    def fits(self, item: Item, overhead: int) -> bool:
        """Whether the item fits in this request."""
        separator = _SEPARATOR_BYTES if self.items else 0
        return (
            len(self.items) < MAX_IDENTIFICATIONS
            and self.properties + item.properties <= MAX_PROPERTIES
            and overhead + self.encoded_bytes + separator + item.encoded_bytes <= MAX_BODY_BYTES
        )

    def add(self, item: Item) -> None:
        """Add the item to this request."""
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
        """A request holding these items."""
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


GroupKey = tuple[str, str]


def group_key(identification: dict[str, Any]) -> GroupKey:
    """(group type, group value): what names one group."""
    return identification["group_type"], identification["group_value"]


# A full request waits this many records before it is handed out: an update of one of its
# groups that comes within them is still merged into it, as if the batch had been packed whole.
HOLD_RECORDS = 100


class Packer:
    """Greedy packing in order, as identifications arrive.

    Each request is handed out once it is full and ``hold_records`` more records were read, so it can be sent
    while the rest of the batch is still being read.

    A later identification of a group still in an unreleased request is merged into the earlier
    one (in its place, the later operations applied over the earlier ones) and the requests
    from there on are packed again: until a request is released, the requests are exactly
    those of packing the merged batch whole, the fewest for contiguous packing, and a request
    never carries a group twice. A property too large for any request is left out and reported
    to ``on_oversized`` (or raised without one); the rest of its group is sent.
    """

    def __init__(
        self,
        api_key: str,
        on_oversized: Callable[[OversizedValue], None] | None = None,
        hold_records: int = HOLD_RECORDS,
    ) -> None:
        self.overhead = body_overhead(api_key)
        self.on_oversized = on_oversized
        self.hold_records = hold_records
        self._records = 0  # records ended so far
        self._held: list[tuple[Request, int]] = []  # full requests, with the record that closed them
        self._open = Request()
        # The unreleased groups' items (a group split over several requests, too large for
        # one, is not merged into).
        self._index: dict[GroupKey, Item] = {}

    def add(self, identification: dict[str, Any]) -> None:
        """Pack one identification."""
        key = group_key(identification)
        earlier = self._index.get(key)
        if earlier is None:
            self._place_group(key, identification)
            return
        merge_into(earlier.identification, identification)
        requests = [request for request, _ in self._held] + [self._open]
        start = next(i for i, r in enumerate(requests) if any(item is earlier for item in r.items))
        items = [item for request in requests[start:] for item in request.items]
        del self._held[start:]
        self._open = Request()
        del self._index[key]
        for item in items:
            if item is earlier:
                self._place_group(key, earlier.identification)  # encoded again, merged
            else:
                self._place(item)

    def end_record(self) -> list[Request]:
        """A record's identifications were all added: the requests now old enough to send."""
        self._records += 1
        released: list[Request] = []
        while self._held and self._records - self._held[0][1] > self.hold_records:
            request, _ = self._held.pop(0)
            released.append(request)
            self._forget(request)
        return released

    @property
    def holding(self) -> bool:
        """Identifications were packed that no request handed out carries yet."""
        return bool(self._held or self._open.items)

    def flush(self) -> list[Request]:
        """Every unreleased request, the last one partly filled; packing starts afresh."""
        requests = [request for request, _ in self._held]
        if self._open.items:
            requests.append(self._open)
        self._held, self._open, self._index = [], Request(), {}
        return requests

    def _forget(self, request: Request) -> None:
        index = self._index
        for item in request.items:
            key = group_key(item.identification)
            if index.get(key) is item:
                del index[key]

    def _place(self, item: Item) -> None:
        if not self._open.fits(item, self.overhead):
            self._held.append((self._open, self._records))
            self._open = Request()
        self._open.add(item)

    def _place_group(self, key: GroupKey, identification: dict[str, Any]) -> None:
        try:
            items = list(split_oversized(identification, self.overhead))
        except OversizedValue as exc:
            if self.on_oversized is None:
                raise
            self.on_oversized(exc)
            rest = {
                op: {k: v for k, v in values.items() if k != exc.property}
                for op, values in identification["group_properties"].items()
            }
            rest = {op: values for op, values in rest.items() if values}
            if not rest:
                return
            items = list(split_oversized({**identification, "group_properties": rest}, self.overhead))
        for item in items:
            self._place(item)
        if len(items) == 1:
            self._index[key] = items[0]


def iter_pack(
    identifications: Iterable[dict[str, Any]],
    api_key: str,
    on_oversized: Callable[[OversizedValue], None] | None = None,
) -> Iterator[Request]:
    """Every request of a :class:`Packer` fed ``identifications`` (one a record), as they are released."""
    packer = Packer(api_key, on_oversized)
    for identification in identifications:
        packer.add(identification)
        yield from packer.end_record()
    yield from packer.flush()


def pack(identifications: Iterable[dict[str, Any]], api_key: str) -> list[Request]:
    """Every request of :func:`iter_pack`, as a list."""
    return list(iter_pack(identifications, api_key))
