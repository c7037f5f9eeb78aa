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
DELETED_PROPERTY = "deleted"


@dataclass(frozen=True)
class Options:
    """The target settings that shape identifications."""

    null_values: str = "unset"  # unset | skip
    deleted_records: str = "ignore"  # ignore | unset | flag


class Skip(Exception):
    """The record cannot become a group (no usable group value); the message says why."""


def to_amplitude(value: Any) -> Any:
    """A JSON value Amplitude stores as intended: dates as ISO-8601 strings, numbers stay numbers."""
    if isinstance(value, dt.datetime):
        # One fixed shape in UTC, so that Amplitude's string comparison of dates is chronological.
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or Infinity
    if isinstance(value, Mapping):
        return {str(k): to_amplitude(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [to_amplitude(v) for v in value if v is not None]
    return value


def group_value_of(mapping: GroupMapping, record: Mapping[str, Any]) -> str:
    """The group name field as a string; raises :class:`Skip` when it cannot name a group."""
    raw = mapping.group_value(record)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise Skip(f"no value in group name field '{mapping.group_name_field}'")
    value = str(to_amplitude(raw))
    if len(value) > MAX_STRING:
        # Truncating an id could merge two groups, so such a row is skipped instead.
        raise Skip(f"group name field '{mapping.group_name_field}' is longer than {MAX_STRING} characters")
    return value


class IdentificationBuilder:
    """Builds identifications and counts what it had to skip or truncate."""

    def __init__(self, options: Options, logger: logging.Logger) -> None:
        self.options = options
        self.logger = logger
        self.truncated = 0
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

    def build(self, mapping: GroupMapping, record: Mapping[str, Any]) -> dict[str, Any] | None:
        """One identification for one mapping of a record; None when there is nothing to send."""
        group_value = group_value_of(mapping, record)
        set_: dict[str, Any] = {}
        unset: dict[str, str] = {}
        deleted = record.get("IsDeleted") is True
        mode = self.options.deleted_records
        if deleted and mode == "unset":
            unset = dict.fromkeys((p.property for p in mapping.properties), UNSET)
        else:
            for prop, raw in mapping.property_values(record).items():
                value = to_amplitude(raw)
                if value is None:
                    if self.options.null_values == "unset":
                        unset[prop] = UNSET
                    continue
                set_[prop] = self._string(mapping, prop, value)
            if mode == "flag":
                set_[DELETED_PROPERTY] = deleted
        ops: dict[str, dict[str, Any]] = {}
        if set_:
            ops["$set"] = set_
        if unset:
            ops["$unset"] = unset
        if not ops:
            return None
        return {"group_type": mapping.group_type, "group_value": group_value, "group_properties": ops}

    def build_all(
        self, mappings: tuple[GroupMapping, ...], records: list[dict[str, Any]], stream: str
    ) -> tuple[list[dict[str, Any]], list[str], int]:
        """Identifications of a batch (last write per group wins), skip reasons, deleted rows ignored.

        Requests go out concurrently, so two updates of one group must not travel in two of
        them: a later record of the same group replaces the earlier one here.
        """
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        skipped: list[str] = []
        deleted_ignored = 0
        for record in records:
            if record.get("IsDeleted") is True and self.options.deleted_records == "ignore":
                deleted_ignored += 1
                continue
            for mapping in mappings:
                try:
                    identification = self.build(mapping, record)
                except Skip as exc:
                    name = record.get("Id") or {k: record.get(k) for k in list(record)[:3]}
                    skipped.append(f"{stream} record {name}: {exc}")
                    continue
                if identification is not None:
                    latest[(identification["group_type"], identification["group_value"])] = identification
        return list(latest.values()), skipped, deleted_ignored
