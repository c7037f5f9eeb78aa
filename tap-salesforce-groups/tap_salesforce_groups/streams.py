"""One stream per mapped Salesforce object: only the mapped fields, incremental on SystemModstamp."""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from singer_sdk import Stream
from singer_sdk.helpers.conform import TypeConformanceLevel

from tap_salesforce_groups.client import SalesforceClient, csv_lines
from tap_salesforce_groups.errors import (
    BulkNotSupported,
    QueryCursorExpired,
    QueryTooBig,
    SalesforceClientError,
    StopRun,
)
from tap_salesforce_groups.prefetch import prefetch
from tap_salesforce_groups.progress import Progress
from tap_salesforce_groups.run import RunControl, RunInterrupted
from tap_salesforce_groups.soql import (
    MAX_URI_BYTES,
    Window,
    build_soql,
    query_uri_bytes,
    record_datetime,
)

if TYPE_CHECKING:
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

# State key next to the SDK's bookmark: Ids already emitted whose replication key equals the
# bookmark. Queries use `>=` so an interrupted run loses nothing; these Ids are skipped so that
# an unchanged org sends nothing even when thousands of rows share the bookmark's timestamp.
EMITTED_AT_BOOKMARK = "ids_at_bookmark"
SDK_PROGRESS_MARKERS = "progress_markers"  # where the SDK keeps an unsorted stream's high-water mark
MIN_WINDOW = timedelta(minutes=1)  # windows halve on QUERY_TIMEOUT down to this, then give up

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


def _csv_bool(value: str) -> bool:
    return value.lower() == "true"


def exact_int(value: str) -> int:
    """A CSV integer without a detour through float, which loses digits beyond 2**53."""
    return int(value) if "." not in value and "E" not in value.upper() else int(Decimal(value))


class Ties:
    """The newest timestamp emitted and the Ids emitted at it; and which of them to skip."""

    def __init__(self, stamp: str | None, ids: list[str]) -> None:
        self.stamp, self.ids = stamp, ids
        self.restart()

    def copy(self) -> Ties:
        """The same position, with Ids of its own, skipping what the copied one skips."""
        twin = Ties(self.stamp, list(self.ids))
        twin.skip_stamp, twin.skip = self.skip_stamp, set(self.skip)
        return twin

    def restart(self) -> None:
        """A new query starts at ``stamp`` (``>=``): skip the Ids already emitted there."""
        self.skip_stamp, self.skip = self.stamp, set(self.ids)

    def already_emitted(self, stamp: str, record_id: str) -> bool:
        return stamp == self.skip_stamp and record_id in self.skip

    def emitted(self, stamp: str, record_id: str) -> None:
        """Note an emitted row, in any order: a newer stamp starts a new Id list."""
        if self.stamp is None or stamp > self.stamp:
            self.stamp, self.ids = stamp, [record_id]
        elif stamp == self.stamp:
            self.ids.append(record_id)


def commit_bookmark(state: dict[str, Any], key: str, stamp: str, ids: list[str]) -> None:
    """Move the bookmark: every row before ``stamp``, and ``ids`` at it, have been emitted.

    The stream owns its bookmark because only it knows when a position is complete: row by
    row on sorted REST reads, window by window on unsorted Bulk reads. This is the one place
    that writes into the dict ``Stream.get_context_state`` returns (documented as writable),
    using the SDK's own ``replication_key``/``replication_key_value`` keys. The SDK copies the
    whole dict into STATE and reads the bookmark back on resume;
    tests/tap/test_tap.py::test_sdk_keeps_our_state_key fails if that changes.
    """
    state["replication_key"] = key
    state["replication_key_value"] = stamp
    state[EMITTED_AT_BOOKMARK] = ids


def drop_sdk_progress_marker(state: dict[str, Any]) -> None:
    """Forget the SDK's own high-water mark before the SDK finalizes the stream.

    With ``is_sorted`` False the SDK tracks the newest value seen under ``progress_markers``
    and promotes it to the bookmark when ``get_records`` returns, even if reading stopped
    early: after an unsorted read that would skip rows not yet emitted. The bookmark
    :func:`commit_bookmark` wrote is the one to keep.
    """
    state.pop(SDK_PROGRESS_MARKERS, None)


class _HideUnsortedWarning(logging.Filter):
    """Hide the SDK's "progress is not resumable if interrupted" warning, which is untrue here.

    The SDK says so of every stream with ``is_sorted`` False; these streams commit a
    resumable bookmark themselves (:func:`commit_bookmark`).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Stream is assumed to be unsorted")


_SDK_LOGGER = logging.getLogger("singer_sdk")
if not any(isinstance(f, _HideUnsortedWarning) for f in _SDK_LOGGER.filters):
    _SDK_LOGGER.addFilter(_HideUnsortedWarning())


class SalesforceObjectStream(Stream):
    """Rows of one Salesforce object, limited to the fields the mapping needs."""

    # Records are typed once, from describe, as they are read (REST JSON is typed already; Bulk
    # CSV cells are cast per column), so the SDK's per-field conformance pass would only repeat
    # that work on every record.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(
        self,
        tap: Tap,
        *,
        name: str,
        schema: dict[str, Any],
        key_properties: list[str],
        replication_key: str | None,
        client: SalesforceClient,
        run: RunControl,
    ) -> None:
        super().__init__(tap=tap, schema=schema, name=name)
        self.primary_keys = key_properties
        self.replication_key = replication_key
        self.client = client
        self.run = run
        props = schema.get("properties", {})
        self.fields = list(props)
        self._hops = [(f, f.split(".")) for f in self.fields]
        self._datetime_fields = [k for k, v in props.items() if v.get("format") == "date-time"]

    @property
    def is_sorted(self) -> bool:
        """False: Bulk rows come unsorted, so the SDK must not move the bookmark per record.

        The stream commits the bookmark itself (:func:`commit_bookmark`): per row on REST,
        whose queries are sorted, and per completed window on Bulk, whose are not.
        """
        return False

    # -- the read, in one screen ---------------------------------------------------------------
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """Read the object from the bookmark, window by window; stop cleanly when told to."""
        if self.run.stopped_reason:
            self.logger.warning("Skipping %s: %s", self.name, self.run.stopped_reason)
            return
        state = self.get_context_state(context)
        start = self.get_starting_timestamp(context) if self.replication_key else None
        ties = self._ties_at(state, start)
        committed = ties.copy()  # the bookmark in state: where an unsorted re-read starts
        progress = Progress(self.logger, self.name, delivered=len(ties.skip))
        window, size = Window(start), None
        try:
            bulk = self._use_bulk(window, progress)  # Bulk rows come unsorted (PK chunking)
            while True:
                try:
                    for record in self._read(window, bulk, progress):
                        if self._first_time(record, ties, None if bulk else state):
                            yield record
                except BulkNotSupported as exc:
                    if not bulk:
                        raise
                    # Nothing of this window was read: read it again, and the rest, through REST.
                    self.logger.warning("%s: %s; reading it through REST instead", self.name, exc)
                    bulk = False
                    continue
                except (QueryTooBig, QueryCursorExpired) as exc:
                    if bulk:  # nothing of an unsorted window counts until it ends
                        ties = committed.copy()
                    if isinstance(exc, QueryTooBig):
                        window, size = self._smaller_window(window, size, ties, exc)
                    else:
                        self.logger.warning("Query cursor expired on %s; re-querying", self.name)
                        window = Window(self._position(window, ties), window.end)
                    continue
                if self.run.stopped_reason:
                    return
                if bulk:
                    committed = self._commit_window(state, window, ties)
                    ties = committed.copy()  # the next window's rows must not change `committed`
                if window.end is None:
                    return
                window = self._next_window(window, size)
        except StopRun as exc:
            self.run.stop(f"{exc}; state saved, the next run resumes", failed=exc.failed)
        except SalesforceClientError as exc:
            self.run.stop(str(exc), failed=True)
        except RunInterrupted:
            self.logger.warning("%s: stopped reading on a signal; state saved", self.name)
        finally:
            drop_sdk_progress_marker(state)
            self.logger.info(self.client.usage_line())

    def _read(self, window: Window, bulk: bool, progress: Progress) -> Iterator[dict[str, Any]]:
        """Records of one window through REST or Bulk; a signal may interrupt the wait for them."""
        soql = build_soql(
            self.name,
            self.fields,
            replication_key=self.replication_key,
            window=window,
            limit=self.ABORT_AT_RECORD_COUNT,  # under --test, ask for no more than the SDK keeps
            ordered=not bulk,
        )
        self.logger.info("Querying %s (%s): %s", self.name, "Bulk API 2.0" if bulk else "REST", soql)
        rows = progress.track(self._bulk_records(soql) if bulk else self._rest_records(soql))
        while not self.run.stopped_reason:
            self.run.waiting = True
            try:
                record = next(rows, None)
            finally:
                self.run.waiting = False
            if record is None:
                return
            yield record

    def _first_time(self, record: dict[str, Any], ties: Ties, state: dict[str, Any] | None) -> bool:
        """False for a row emitted at the bookmark already; tracks the Ids at the newest stamp.

        With ``state`` (a sorted read) the bookmark moves to this row before it is emitted,
        so any STATE written after it covers it.
        """
        key = self.replication_key
        if key is None:
            return True
        stamp, record_id = record[key], record["Id"]
        if ties.already_emitted(stamp, record_id):
            return False
        ties.emitted(stamp, record_id)
        if state is not None:
            commit_bookmark(state, key, stamp, ties.ids)
        return True

    def _commit_window(self, state: dict[str, Any], window: Window, ties: Ties) -> Ties:
        """An unsorted window was read whole: commit its end (or, when open, the newest row)."""
        key = str(self.replication_key)
        if window.end is not None:
            done = Ties(record_datetime(window.end), [])  # nothing at the end was read yet
        elif ties.stamp is not None:
            done = ties.copy()
        else:
            return ties  # nothing read, nothing to commit
        commit_bookmark(state, key, str(done.stamp), done.ids)
        return done

    # -- where to read ---------------------------------------------------------------------------
    def _ties_at(self, state: dict[str, Any], start: datetime | None) -> Ties:
        """The Ids emitted at the bookmark, unless start_date moved the start past it."""
        bookmark = state.get("replication_key_value")
        if start is None or bookmark is None or parse_datetime(str(bookmark)) != start:
            return Ties(None, [])
        return Ties(str(bookmark), list(state.get(EMITTED_AT_BOOKMARK) or []))

    def _use_bulk(self, window: Window, progress: Progress) -> bool:
        """Bulk API 2.0 for big objects (api_type auto), always (bulk), or when the REST URI would be too long."""
        api_type = self.config["api_type"]
        soql = build_soql(self.name, self.fields, replication_key=self.replication_key, window=window)
        uri = query_uri_bytes(self.client.api_version, soql)
        if uri > MAX_URI_BYTES:
            if api_type == "rest":
                msg = (
                    f"{self.name}: the REST query URI would be {uri} bytes, above Salesforce's "
                    f"{MAX_URI_BYTES}; set api_type to auto or bulk for this many fields"
                )
                raise SalesforceClientError(msg)
            self.logger.info(
                "%s: %d fields make a %d-byte REST URI; using Bulk API 2.0", self.name, len(self.fields), uri
            )
            return True
        if api_type != "auto" or self.ABORT_AT_RECORD_COUNT is not None:
            return bool(api_type == "bulk")
        count = build_soql(self.name, [], replication_key=self.replication_key, window=window, count=True)
        include_deleted = self._include_deleted
        try:
            rows = self.client.count(count, include_deleted=include_deleted)
        except QueryTooBig:
            self.logger.info("%s: counting the rows timed out; using Bulk API 2.0", self.name)
            return True
        return progress.expect(rows, bulk_from=int(self.config["bulk_threshold"]))

    def _position(self, window: Window, ties: Ties) -> datetime | None:
        """Where a re-query starts: at the last emitted stamp (its Ids skipped), else the window's start."""
        if ties.stamp is not None and (window.start is None or parse_datetime(ties.stamp) >= window.start):
            ties.restart()
            return parse_datetime(ties.stamp)
        return window.start

    def _smaller_window(
        self, window: Window, size: timedelta | None, ties: Ties, exc: QueryTooBig
    ) -> tuple[Window, timedelta]:
        """Half the window that failed, from where reading stopped; fail below MIN_WINDOW."""
        if not self.replication_key:
            raise SalesforceClientError(f"{exc} ({self.name} has no SystemModstamp to read it in windows)")
        start = self._position(window, ties) or self._oldest()
        span = (window.end or datetime.now(timezone.utc)) - start
        size = min(size, span) / 2 if size else span / 2
        if size < MIN_WINDOW:
            raise SalesforceClientError(f"{exc}; even a {MIN_WINDOW} window fails")
        shown = timedelta(seconds=round(size.total_seconds()))
        self.logger.warning(
            "%s: %s; reading in windows of %s from %s", self.name, exc, shown, start.isoformat()
        )
        return Window(start, start + size), size

    def _next_window(self, window: Window, size: timedelta | None) -> Window:
        start = window.end or datetime.now(timezone.utc)
        end = start + size if size else None
        return Window(start, end if end and end < datetime.now(timezone.utc) else None)

    def _oldest(self) -> datetime:
        """The oldest replication key value: the start of the first window (one indexed row)."""
        key = str(self.replication_key)
        soql = build_soql(self.name, ["Id", key], replication_key=key, limit=1)
        for page in self.client.query_pages(soql, include_deleted=self._include_deleted):
            for row in page:
                return parse_datetime(str(row[key]))
        return datetime.now(timezone.utc)

    @property
    def _include_deleted(self) -> bool:
        return bool(self.config["include_deleted"]) and "IsDeleted" in self.fields

    # -- records -----------------------------------------------------------------------------------
    def _rest_records(self, soql: str) -> Iterator[dict[str, Any]]:
        """Flat records from REST pages: ``Owner.Name`` becomes a top-level key (canonical names).

        The next page downloads while this one is written out (the budget is still checked
        before each next page is asked for).
        """
        pages = self.client.query_pages(soql, include_deleted=self._include_deleted)
        plan = [(path, hops if len(hops) > 1 else None) for path, hops in self._hops]
        datetime_fields = self._datetime_fields
        for page in prefetch(pages, name=f"{self.name}-pages"):
            for raw in page:
                record: dict[str, Any] = {}
                for path, hops in plan:
                    if hops is None:  # a field of the object itself: one lookup
                        record[path] = raw.get(path)
                        continue
                    node: Any = raw
                    for hop in hops:
                        node = node.get(hop) if isinstance(node, dict) else None
                    record[path] = node
                for f in datetime_fields:
                    value = record[f]
                    if value is not None:
                        record[f] = iso_datetime(value)
                yield record

    def _bulk_records(self, soql: str) -> Iterator[dict[str, Any]]:
        """Typed records from Bulk CSV pages, whose header holds the canonical names we selected.

        Each page is parsed by column: the header is read once, and a cell is cast only when
        its type needs it (text stays text).
        """
        convert = self._csv_converters()
        fields = self.fields
        for content in self.client.bulk_pages(self.name, soql, include_deleted=self._include_deleted):
            rows = csv.reader(csv_lines(content))  # parsed lazily: memory holds the page's bytes
            header = next(rows, None)
            if header is None:
                continue
            index = {name: i for i, name in enumerate(header)}
            missing = [f for f in fields if f not in index]
            if missing:
                raise SalesforceClientError(f"Bulk results for {self.name} lack columns {missing}")
            plan = [(f, index[f], convert[f]) for f in fields]
            for row in rows:
                yield {f: (cast(row[i]) if cast else row[i]) if row[i] else None for f, i, cast in plan}

    def _csv_converters(self) -> dict[str, Callable[[str], Any] | None]:
        """Bulk results are CSV text: empty means null; types come from the schema (None: text)."""
        converters: dict[str, Callable[[str], Any] | None] = {}
        for name, prop in self.schema["properties"].items():
            types = prop.get("type") or []
            if prop.get("format") == "date-time":
                converters[name] = iso_datetime
            elif "integer" in types:
                converters[name] = exact_int
            elif "number" in types:
                converters[name] = float
            elif "boolean" in types:
                converters[name] = _csv_bool
            else:
                converters[name] = None
        return converters
