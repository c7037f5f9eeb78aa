"""From a record and its group mappings to Amplitude identifications ($set / $unset only).

Only idempotent operations are sent, so a retried or re-sent request never changes the result.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from groups_mapping import GroupMapping

MAX_STRING = 1024  # Amplitude truncates longer strings; we do it first, and say so
UNSET = "-"  # the value Amplitude's SDKs send with $unset
DELETED_PROPERTY = "deleted"  # the default of the deleted_property setting
_MISSING = object()  # a key absent from a record, unlike an explicit null


@dataclass(frozen=True)
class Options:
    """The target settings that shape identifications."""

    null_values: str = "unset"  # unset | skip
    deleted_records: str = "ignore"  # ignore | unset | flag
    deleted_property: str = DELETED_PROPERTY  # the flag's name (flag mode)


class Skip(Exception):
    """The record cannot become a group (no usable group value); the message says why."""


class BadValue(ValueError):
    """A value Amplitude cannot store as sent; the message says why."""


@dataclass(frozen=True)
class ValueProblem:
    """One property value left out of an identification, and why."""

    group_type: str
    group_value: str
    property: str
    reason: str


class Unparseable:
    """A value the stream's schema calls a date, time or date-time that does not parse as one."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


_DATELIKE_PARSERS: dict[str, Any] = {
    "date-time": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
}
DATELIKE_FORMATS = tuple(_DATELIKE_PARSERS)


def parse_datelike(kind: str, value: str) -> Any:
    """A date, time or date-time string as Python parses ISO 8601 (as the Singer SDK does).

    A value that does not parse (``0000-00-00 00:00:00`` from MySQL) becomes :class:`Unparseable`:
    it is left out of its group and recorded, instead of failing every rerun at the same row.
    """
    try:
        return _DATELIKE_PARSERS[kind](value)
    except ValueError:
        return Unparseable(f"{value[:40]!r} is not a valid {kind}")


# Past this exponent a number is no longer a finite IEEE double, which is what Amplitude stores.
_MAX_EXPONENT = 308


def _number(value: decimal.Decimal) -> int | float:
    if not value.is_finite():
        raise BadValue(f"{value} is not a finite number")
    if value.adjusted() > _MAX_EXPONENT:  # checked first: int() of 1e999999999 runs for minutes
        raise BadValue(f"{value:.3e} is too large for a number")
    return int(value) if value == value.to_integral_value() else float(value)


def _check_text(value: str) -> str:
    # A lone surrogate (from an escaped "\ud800") has no UTF-8 form: it would fail the request.
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadValue(f"invalid Unicode (lone surrogate at position {exc.start})") from None
    return value


def to_amplitude(value: Any) -> Any:
    """A JSON value Amplitude stores as intended: dates as ISO-8601 strings, numbers stay numbers.

    Raises :class:`BadValue` for what has no faithful JSON form (NaN, infinities, lone surrogates).
    """
    if isinstance(value, str):
        return _check_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadValue(f"{value} is not a finite number")  # JSON has no NaN or Infinity
        return value
    if isinstance(value, dt.datetime):
        # One fixed shape in UTC, so that Amplitude's string comparison of dates is chronological.
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return _number(value)
    if isinstance(value, Mapping):
        return {_check_text(str(k)): to_amplitude(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [to_amplitude(v) for v in value if v is not None]
    if isinstance(value, Unparseable):
        raise BadValue(value.reason)
    return value


def group_value_of(mapping: GroupMapping, record: Mapping[str, Any]) -> str:
    """The group name field as a string; raises :class:`Skip` when it cannot name a group."""
    raw = record.get(mapping.group_name_field)
    if type(raw) is str and raw.isascii() and len(raw) <= MAX_STRING and raw.strip():
        return raw  # an id as Salesforce sends it: what the checks below would return
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise Skip(f"no value in group name field '{mapping.group_name_field}'")
    if isinstance(raw, bool):
        return "true" if raw else "false"  # as JSON writes it, not Python's "True"
    if isinstance(raw, (Mapping, list, tuple)):
        # Its text would be a Python repr ("{'a': 1}"): no id a user could look up.
        kind = "an object" if isinstance(raw, Mapping) else "an array"
        raise Skip(f"group name field '{mapping.group_name_field}' holds {kind}, not a value")
    try:
        value = str(to_amplitude(raw))
    except BadValue as exc:
        raise Skip(f"group name field '{mapping.group_name_field}': {exc}") from None
    if len(value) > MAX_STRING:
        # Truncating an id could merge two groups, so such a row is skipped instead.
        raise Skip(f"group name field '{mapping.group_name_field}' is longer than {MAX_STRING} characters")
    return value


def merge_into(earlier: dict[str, Any], later: dict[str, Any]) -> None:
    """Apply ``later``'s operations on top of ``earlier`` (same group), as Amplitude would in order."""
    ops = earlier["group_properties"]
    for op, values in later["group_properties"].items():
        for other, other_values in ops.items():
            if other != op:
                for name in values:
                    other_values.pop(name, None)
        ops.setdefault(op, {}).update(values)
    for op in [op for op, values in ops.items() if not values]:
        del ops[op]


class IdentificationBuilder:
    """Builds identifications and counts what it had to skip, refuse or truncate."""

    def __init__(self, options: Options, logger: logging.Logger) -> None:
        self.options = options
        self.logger = logger
        self.truncated = 0
        self.bad_values: list[ValueProblem] = []
        self._warned_truncation: set[tuple[str, str]] = set()

    def _string(self, mapping: GroupMapping, prop: str, value: Any) -> Any:
        if isinstance(value, str) and len(value) > MAX_STRING:
            self.truncated += 1
            if (mapping.group_type, prop) not in self._warned_truncation:
                self._warned_truncation.add((mapping.group_type, prop))
                self.logger.warning(
                    "%s: property '%s' has values longer than %d characters; sending them truncated "
                    "(Amplitude would truncate them anyway)",
                    mapping.label,
                    prop,
                    MAX_STRING,
                )
            return value[:MAX_STRING]
        return value

    def build(
        self, mapping: GroupMapping, record: Mapping[str, Any], flag: str | None = None
    ) -> dict[str, Any] | None:
        """One identification for one mapping of a record; None when there is nothing to send.

        A field absent from the record is left alone; only an explicit null is ``$unset``. In
        ``flag`` mode, ``flag`` (default ``deleted_property``) is this mapping's deleted flag: a
        deleted row sends only the flag, true; a live row sends its values and the flag, false.
        """
        group_value = group_value_of(mapping, record)
        set_: dict[str, Any] = {}
        unset: dict[str, str] = {}
        deleted = record.get("IsDeleted") is True
        mode = self.options.deleted_records
        flag = flag or self.options.deleted_property
        if deleted and mode == "unset":
            unset = dict.fromkeys((p.property for p in mapping.properties), UNSET)
        elif deleted and mode == "flag":
            set_[flag] = True  # a deleted row's values are not news: only that it was deleted
        else:
            unset_nulls = self.options.null_values == "unset"
            for p in mapping.properties:
                raw = record.get(p.field, _MISSING)
                if raw is _MISSING:
                    continue
                kind = type(raw)
                if raw is None:
                    if unset_nulls:
                        unset[p.property] = UNSET
                    continue
                if (kind is str and raw.isascii() and len(raw) <= MAX_STRING) or kind is int or kind is bool:
                    set_[p.property] = raw  # what to_amplitude and _string would return unchanged
                    continue
                try:
                    value = to_amplitude(raw)
                except BadValue as exc:
                    self.bad_values.append(
                        ValueProblem(mapping.group_type, group_value, p.property, str(exc))
                    )
                    continue
                if value is None:
                    if unset_nulls:
                        unset[p.property] = UNSET
                    continue
                set_[p.property] = self._string(mapping, p.property, value)
            if mode == "flag":
                set_[flag] = False
        ops: dict[str, dict[str, Any]] = {}
        if set_:
            ops["$set"] = set_
        if unset:
            ops["$unset"] = unset
        if not ops:
            return None
        return {"group_type": mapping.group_type, "group_value": group_value, "group_properties": ops}

    def build_all(
        self,
        mappings: tuple[GroupMapping, ...],
        records: list[dict[str, Any]],
        stream: str,
        flags: tuple[str, ...] | None = None,
    ) -> tuple[list[dict[str, Any]], list[str], int]:
        """Identifications of a batch, skip reasons, deleted rows ignored.

        One identification per group, later records applied over earlier ones. ``flags`` names
        each mapping's deleted flag.

        Requests go out concurrently, so two updates of one group must not travel in two of
        them: a later record of the same group is merged into the earlier one here.
        """
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        skipped: list[str] = []
        deleted_ignored = 0
        for record in records:
            if record.get("IsDeleted") is True and self.options.deleted_records == "ignore":
                deleted_ignored += 1
                continue
            for n, mapping in enumerate(mappings):
                try:
                    identification = self.build(mapping, record, flags[n] if flags else None)
                except Skip as exc:
                    name = record.get("Id") or {k: record.get(k) for k in list(record)[:3]}
                    skipped.append(f"{stream} record {name}: {exc}")
                    continue
                if identification is None:
                    continue
                key = (identification["group_type"], identification["group_value"])
                earlier = latest.get(key)
                if earlier is None:
                    latest[key] = identification
                else:
                    merge_into(earlier, identification)
        return list(latest.values()), skipped, deleted_ignored
