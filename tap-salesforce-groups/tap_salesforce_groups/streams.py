"""One stream per mapped Salesforce object: only the mapped fields, incremental on SystemModstamp."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from singer_sdk import Stream

from tap_salesforce_groups.client import (
    BULK_PAGE_ROWS,
    ApiBudgetReached,
    QueryCursorExpired,
    RequestLimitExceeded,
    build_soql,
)
from tap_salesforce_groups.progress import Progress

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

    from tap_salesforce_groups.tap import TapSalesforceGroups

# State key next to the SDK's bookmark: Ids already emitted whose replication key equals the
# bookmark. The query uses `>=` so an interrupted run loses nothing; these are skipped so that
# an unchanged org sends nothing even when thousands of rows share the bookmark's timestamp.
EMITTED_AT_BOOKMARK = "ids_at_bookmark"

_TZ_NO_COLON = re.compile(r"([+-]\d{2})(\d{2})$")


def iso_datetime(value: str) -> str:
    """``2025-05-20T20:49:32.000+0000`` (Salesforce) → ``2025-05-20T20:49:32.000+00:00`` (ISO 8601)."""
    if value.endswith("Z"):
        return value[:-1] + "+00:00"
    return _TZ_NO_COLON.sub(r"\1:\2", value)


def _lookup(obj: dict[str, Any], key: str) -> Any:
    """``obj[key]``, matching case-insensitively when the mapping spells a name differently."""
    if key in obj:
        return obj[key]
    lowered = key.lower()
    return next((v for k, v in obj.items() if k.lower() == lowered), None)


def flatten(raw: dict[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """A flat record: relationship paths such as ``Owner.Name`` become top-level keys."""
    record: dict[str, Any] = {}
    for path in paths:
        if "." not in path:
            record[path] = _lookup(raw, path)
            continue
        node: Any = raw
        for hop in path.split("."):
            node = _lookup(node, hop) if isinstance(node, dict) else None
        record[path] = node
    return record


class SalesforceObjectStream(Stream):
    """Rows of one Salesforce object, limited to the fields the mapping needs."""

    def __init__(
        self,
        tap: TapSalesforceGroups,
        *,
        name: str,
        schema: dict[str, Any],
        key_properties: list[str],
        replication_key: str | None,
    ) -> None:
        super().__init__(tap=tap, schema=schema, name=name)
        self.primary_keys = key_properties
        self.replication_key = replication_key
        self._tap_ref = tap
        props = schema.get("properties", {})
        self._fields = list(props)
        self._datetime_fields = [k for k, v in props.items() if v.get("format") == "date-time"]

    @property
    def is_sorted(self) -> bool:
        """Incremental queries are ordered by the replication key, so state is resumable."""
        return self.replication_key is not None

    def _resume_point(self, context: Context | None) -> tuple[datetime | None, str | None, list[str]]:
        """Where to start: the bookmark (or start_date) and the Ids already emitted at it."""
        start = self.get_starting_timestamp(context) if self.replication_key else None
        state = self.get_context_state(context)
        bookmark = state.get("replication_key_value")
        ids = list(state.get(EMITTED_AT_BOOKMARK) or [])
        if start is None or bookmark is None or self._parse_datetime(bookmark) != start:
            return start, None, []  # start_date is later than the bookmark: nothing was emitted there
        return start, bookmark, ids

    # -- reading -------------------------------------------------------------------------
    def _use_bulk(self, start: datetime | None, include_deleted: bool, progress: Progress) -> bool:
        """Bulk API 2.0 for big objects (api_type auto) or always (bulk), when the fields allow it."""
        api_type = self.config.get("api_type", "auto")
        if api_type == "rest" or self.ABORT_AT_RECORD_COUNT is not None:
            return False
        compound = [f for f, v in self.schema["properties"].items() if "object" in (v.get("type") or [])]
        if compound:  # Bulk queries cannot select compound (address, location) fields
            if api_type == "bulk":
                self.logger.warning(
                    "%s: compound fields %s need the REST API; not using Bulk", self.name, compound
                )
            return False
        if api_type == "bulk":
            return True
        soql = build_soql(self.name, [], replication_key=self.replication_key, start=start, count=True)
        rows = self._tap_ref.client.count(soql, include_deleted=include_deleted)
        threshold = int(self.config.get("bulk_threshold", 100000))
        progress.expect(rows, bulk_from=threshold)
        return rows >= threshold

    def _rest_records(self, soql: str, include_deleted: bool) -> Iterator[dict[str, Any]]:
        client = self._tap_ref.client
        for page in client.query_pages(soql, include_deleted=include_deleted):
            for raw in page:
                record = flatten(raw, self._fields)
                for f in self._datetime_fields:
                    if record[f] is not None:
                        record[f] = iso_datetime(record[f])
                yield record
            client.check_budget()

    def _bulk_records(self, soql: str, include_deleted: bool) -> Iterator[dict[str, Any]]:
        client = self._tap_ref.client
        convert = self._csv_converters()
        for n, row in enumerate(client.bulk_rows(self.name, soql, include_deleted=include_deleted), start=1):
            yield {f: convert[f](row.get(f, "")) for f in self._fields}
            if n % BULK_PAGE_ROWS == 0:
                client.check_budget()

    def _csv_converters(self) -> dict[str, Callable[[str], Any]]:
        """Bulk results are CSV text: empty means null; types come from the schema."""

        def typed(cast: Callable[[str], Any]) -> Callable[[str], Any]:
            return lambda v: cast(v) if v != "" else None

        converters: dict[str, Callable[[str], Any]] = {}
        for name, prop in self.schema["properties"].items():
            types = prop.get("type") or []
            if prop.get("format") == "date-time":
                converters[name] = typed(iso_datetime)
            elif "integer" in types:
                converters[name] = typed(lambda v: int(float(v)))
            elif "number" in types:
                converters[name] = typed(float)
            elif "boolean" in types:
                converters[name] = typed(lambda v: v.lower() == "true")
            else:
                converters[name] = typed(str)
        return converters

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """Query the object and yield flat records, resuming after an expired query cursor."""
        tap = self._tap_ref
        if tap.stopped_reason:
            self.logger.warning("Skipping %s: %s", self.name, tap.stopped_reason)
            return
        include_deleted = bool(self.config.get("include_deleted", True)) and "IsDeleted" in self._fields
        start, mark, mark_ids = self._resume_point(context)
        skip = set(mark_ids)
        state = self.get_context_state(context)
        key = self.replication_key
        progress = Progress(self.logger, self.name, delivered=len(skip))
        try:
            read = (
                self._bulk_records if self._use_bulk(start, include_deleted, progress) else self._rest_records
            )
            while True:
                # Under --test the SDK stops after ABORT_AT_RECORD_COUNT rows: ask for no more.
                soql = build_soql(
                    self.name,
                    self._fields,
                    replication_key=key,
                    start=start,
                    limit=self.ABORT_AT_RECORD_COUNT,
                )
                self.logger.info(
                    "Querying %s (%s): %s",
                    self.name,
                    "Bulk API 2.0" if read == self._bulk_records else "REST",
                    soql,
                )
                try:
                    for record in progress.track(read(soql, include_deleted)):
                        if key is None:
                            yield record
                            continue
                        stamp = record[key]
                        if stamp == mark and record["Id"] in skip:
                            continue
                        # Before the SDK advances its bookmark to this stamp, record the Ids
                        # emitted at it, so any STATE written from here on is consistent.
                        if stamp != mark:
                            mark, mark_ids, skip = stamp, [], set()
                        mark_ids.append(record["Id"])
                        state[EMITTED_AT_BOOKMARK] = mark_ids
                        yield record
                    return
                except QueryCursorExpired:
                    # Re-query from the last emitted stamp; the Ids at it are skipped.
                    self.logger.warning("Query cursor expired on %s; re-querying from %s", self.name, mark)
                    if mark is not None:
                        start = self._parse_datetime(mark)
                        skip = set(mark_ids)
        except ApiBudgetReached as exc:
            tap.stop(f"{exc}; stopping cleanly with state saved, the next run resumes")
        except RequestLimitExceeded as exc:
            tap.stop(str(exc), failed=True)
