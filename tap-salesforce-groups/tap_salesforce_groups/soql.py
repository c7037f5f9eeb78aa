"""SOQL text from names the mapping validator and describe have already checked."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote_plus

from groups_mapping.validate import SALESFORCE_FIELD
from tap_salesforce_groups.errors import SalesforceClientError
from tap_salesforce_groups.timestamps import soql_datetime

# Salesforce refuses a request whose URI plus headers pass 16,384 bytes (HTTP 431; a URI alone
# past it is 414): Developer Limits and Allocations Quick Reference, "API Request Limits". REST
# queries are GETs, their SOQL in the URI.
MAX_URI_BYTES = 16_384


@dataclass(frozen=True)
class Window:
    """Rows with ``start <= key < end``; ``None`` leaves that side open."""

    start: datetime | None = None
    end: datetime | None = None


def build_soql(
    object_name: str,
    fields: Iterable[str],
    *,
    replication_key: str | None = None,
    window: Window = Window(),
    limit: int | None = None,
    count: bool = False,
    ordered: bool = True,
    extra: str | None = None,
) -> str:
    """``SELECT … FROM … [WHERE key >= start AND key < end] [ORDER BY key, Id] [LIMIT n]``.

    ``>=`` because many rows can share one timestamp: an interrupted run must see the rest of
    them again (the stream skips the ones it already emitted). ``ordered`` (REST) sorts by the
    bookmark so it can advance row by row; Bulk queries leave ORDER BY out, because it turns
    off Salesforce's PK chunking, and commit the bookmark per window instead.
    ``count`` asks for ``COUNT()``; ``extra`` is one more condition, built by :func:`in_ids`.
    """
    fields = list(fields)
    names = [object_name, *fields, *([replication_key] if replication_key else [])]
    bad = [n for n in names if not SALESFORCE_FIELD.match(n)]
    if bad:  # the mapping validator already refuses these; never splice unchecked text into SOQL
        raise SalesforceClientError(f"refusing to query invalid Salesforce names: {', '.join(bad)}")
    soql = f"SELECT {'COUNT()' if count else ', '.join(fields)} FROM {object_name}"  # noqa: S608
    bounds = [extra] if extra else []
    if replication_key:
        if window.start is not None:
            bounds.append(f"{replication_key} >= {soql_datetime(window.start)}")
        if window.end is not None:
            bounds.append(f"{replication_key} < {soql_datetime(window.end)}")
    if bounds:
        soql += " WHERE " + " AND ".join(bounds)
    if replication_key and ordered and not count:
        soql += f" ORDER BY {replication_key} ASC, Id ASC"
    if limit is not None and not count:
        soql += f" LIMIT {int(limit)}"
    return soql


def query_uri_bytes(api_version: str, soql: str) -> int:
    """Bytes of the request URI (path and query) that sends ``soql`` to ``/queryAll``."""
    return len(f"/services/data/v{api_version}/queryAll/?q={quote_plus(soql)}".encode())


_ID = re.compile(r"[0-9A-Za-z]{15}(?:[0-9A-Za-z]{3})?")


def in_ids(path: str, ids: Iterable[str]) -> str:
    """``path IN ('id', …)`` for record ids read from the org (checked: never spliced unchecked)."""
    ids = list(ids)
    bad = [i for i in ids if not _ID.fullmatch(i)]
    if bad or not SALESFORCE_FIELD.match(path) or not ids:
        raise SalesforceClientError(f"refusing to query invalid ids or names: {path} {bad[:3]}")
    return f"{path} IN ({', '.join(repr(i) for i in ids)})"
