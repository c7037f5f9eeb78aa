"""Timestamps in the three forms the tap meets: Salesforce's, ISO 8601 (records and bookmarks), SOQL."""

from __future__ import annotations

import re
from datetime import datetime, timezone

_TZ_NO_COLON = re.compile(r"([+-]\d{2})(\d{2})$")


def iso_datetime(value: str) -> str:
    """``2025-05-20T20:49:32.000+0000`` (Salesforce) → ``2025-05-20T20:49:32.000+00:00`` (ISO 8601)."""
    if len(value) == 28 and value[23] in "+-" and value[26] != ":":
        return value[:26] + ":" + value[26:]  # the shape Salesforce always sends, without a regex
    if value.endswith("Z"):
        return value[:-1] + "+00:00"
    return _TZ_NO_COLON.sub(r"\1:\2", value)


def parse_datetime(value: str) -> datetime:
    """A bookmark or record timestamp as an aware datetime (UTC when it names no zone)."""
    parsed = datetime.fromisoformat(iso_datetime(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def soql_datetime(value: datetime) -> str:
    """A SOQL datetime literal in UTC with milliseconds, e.g. ``2025-01-31T10:00:00.000Z``."""
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def record_datetime(value: datetime) -> str:
    """A timestamp in the form records carry, e.g. ``2025-01-31T10:00:00.000+00:00``.

    Bookmarks compare as text with record values, so they must share this exact form.
    """
    return soql_datetime(value)[:-1] + "+00:00"
