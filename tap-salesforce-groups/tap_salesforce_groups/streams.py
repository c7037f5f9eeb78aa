"""One stream per mapped Salesforce object: only the mapped fields, incremental on SystemModstamp."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
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
from tap_salesforce_groups.schema import Relationship, calculated_fields, relationships
from tap_salesforce_groups.sdk import PROGRESS_MARKERS
from tap_salesforce_groups.soql import (
    MAX_URI_BYTES,
    Window,
    build_soql,
    in_ids,
)
from tap_salesforce_groups.timestamps import iso_datetime, parse_datetime, record_datetime

if TYPE_CHECKING:
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

# State keys next to the SDK's bookmark (``replication_key_value``), in each stream's entry.
EMITTED = "emitted"  # {Id: stamp} of rows emitted in the lookback span: never sent twice
LEGACY_EMITTED = "ids_at_bookmark"  # before lookback: Ids emitted at the bookmark's stamp
FIELDS_READ = "fields"  # the fields the last complete read selected
SENT_AS = "sent_as"  # [group type, field, property] of each mapped property then: a rename re-reads
IDENTITY = "identity"  # [group type, group name field] of each mapping of the object
RELATIONSHIPS = "relationships"  # chain -> its own bookmark and memory (parents' stamps)
REFRESH = "refresh"  # a full read of some fields (new ones, formulas) under way
FORMULAS_READ_AT = "formulas_read_at"  # when the last full read of calculated fields started
# What describe said of the mapped fields (relationship hops, calculated fields), kept so that an
# incremental run describes nothing; described again when the fields change, and with each
# formula refresh (a field may have become a formula).
DESCRIBED = "described"

MIN_WINDOW = timedelta(minutes=1)  # windows halve on QUERY_TIMEOUT down to this, then give up
MEMORY_LIMIT = 20_000  # (Id, stamp) pairs kept per read; past it the oldest go (and may be re-sent)
# A Bulk job's rows are chosen when it is created, but its PK chunks run at different times
# ("the remaining results are fetched with extra queries", Bulk API Developer Guide, "PK
# Chunking"): its output is not a snapshot, so a read never commits past the job's server-side
# createdDate less this margin (the app servers' clocks, createdDate's whole seconds).
BULK_COMMIT_MARGIN = timedelta(seconds=60)
# Where windows start when the oldest row cannot be found (that query timed out too) and no
# start_date is set: before any org's first day (Salesforce opened in 1999).
SALESFORCE_EPOCH = datetime(1999, 1, 1, tzinfo=timezone.utc)
CHILDREN_PER_QUERY = 200  # parent ids per `IN (…)` query for a polymorphic relationship


def _csv_bool(value: str) -> bool:
    return value.lower() == "true"


def exact_int(value: str) -> int:
    """A CSV integer without a detour through float, which loses digits beyond 2**53."""
    return int(value) if "." not in value and "E" not in value.upper() else int(Decimal(value))


def formulas_due(last: datetime, run_start: datetime, hours: float) -> bool:
    """Whether formula fields are due a full read again: ``hours`` after the last, less some slack.

    A schedule every ``hours`` starts each run about that long after the last, and sometimes a
    little less (the scheduler, Meltano and the login take a varying time before the run's start is
    taken). Without the slack such a run would not be due, and the values would wait a whole
    period more (48 h on a daily schedule). The slack is a tenth of the period, at most an hour.
    """
    slack = min(timedelta(hours=1), timedelta(hours=hours) / 10)
    return run_start - last >= timedelta(hours=hours) - slack


class Memory:
    """The ``(Id, stamp)`` pairs a read emitted in its lookback span, kept in its state slot.

    Reads start ``lookback_seconds`` before the bookmark (late commits: Salesforce stamps a
    row when its transaction runs, and it becomes visible when it commits; airbytehq/airbyte
    #27146). A row comes out again only when its stamp changed, so an unchanged org still
    sends nothing. Generalises the former ``ids_at_bookmark`` (pairs at the bookmark only).
    Bounded: past ``limit`` pairs the oldest are dropped (those rows may be sent again).
    """

    def __init__(self, slot: dict[str, Any], limit: int | None = None) -> None:
        kept = slot.get(EMITTED)
        if isinstance(kept, list) and kept and isinstance(kept[0], dict):
            pairs = kept[0]
        else:
            pairs = kept if isinstance(kept, dict) else {}
        legacy = slot.get(LEGACY_EMITTED)
        bookmark = slot.get("replication_key_value")
        if legacy and bookmark is not None:
            pairs.update(dict.fromkeys((str(i) for i in legacy), str(bookmark)))
        if LEGACY_EMITTED in slot:
            slot[LEGACY_EMITTED] = None  # read into the pairs
        # Live: every STATE the SDK writes carries it. Wrapped in a list because Meltano merges
        # the STATEs of a --full-refresh run key by key (meltano.core.utils.merge), which would
        # make a dict of pairs the union of every STATE's; a list is replaced whole.
        slot[EMITTED] = [pairs]
        self.pairs: dict[str, str] = pairs
        self.limit = limit or MEMORY_LIMIT
        self.dropped = 0
        self._trim_at = max(1024, 2 * len(pairs))  # see full

    def seen(self, record_id: str, stamp: str) -> bool:
        """Whether this row was emitted already."""
        return self.pairs.get(record_id) == stamp

    def note(self, record_id: str, stamp: str) -> None:
        """Remember an emitted row."""
        self.pairs[record_id] = stamp

    @property
    def full(self) -> bool:
        """Time to trim.

        Twice what the last trim kept (at least 1,024 more), at most a quarter past the limit. A read moving
        forward keeps few pairs, so every STATE it writes stays small, and each trim costs about as many steps
        as rows were read since the last.
        """
        return len(self.pairs) > self._trim_at

    def trim(self, floor: str | None, bookmark: str | None) -> None:
        """Forget pairs older than ``floor`` (a read from it cannot return them).

        Then the oldest past ``limit``, never those at or after ``bookmark``: rows sharing the
        bookmark's stamp are all remembered, as ``ids_at_bookmark`` did (a read from the
        bookmark returns every one of them).
        """
        pairs = self.pairs
        if floor is not None:
            for record_id in [i for i, stamp in pairs.items() if stamp < floor]:
                del pairs[record_id]
        excess = len(pairs) - self.limit
        if excess > 0:
            older = sorted((stamp, i) for i, stamp in pairs.items() if bookmark is None or stamp < bookmark)
            for _, record_id in older[:excess]:
                del pairs[record_id]
            self.dropped += min(excess, len(older))
        kept = len(pairs)
        self._trim_at = max(min(self.limit + self.limit // 4, 2 * kept), kept + 1024)


@dataclass
class Pass:
    """One read of the object: the rows whose ``key`` is at or after the slot's bookmark.

    The main pass reads every mapped field on ``SystemModstamp`` into the stream's own state
    entry; a relationship pass reads children on their parent's stamp (``Owner.SystemModstamp``)
    or of given parents (``where``); a refresh pass reads some fields of every row. Each keeps
    its own bookmark and memory in ``slot``.
    """

    label: str
    slot: dict[str, Any]
    key: str | None
    fields: list[str]
    where: str | None = None
    # api_type auto: COUNT() the rows first to choose Bulk for many. A relationship pass reads
    # through REST without counting: usually nothing changed, and the count would cost a call.
    counted: bool = True
    # (key, slot) of relationships whose memory this pass fills with the parent stamp each row
    # carried (a full read: the next relationship pass then skips what it already sent).
    parents: tuple[tuple[str, dict[str, Any]], ...] = ()


def drop_sdk_progress_marker(state: dict[str, Any]) -> None:
    """Forget the SDK's own high-water mark before the SDK finalizes the stream.

    With ``is_sorted`` False the SDK tracks the newest value seen under ``progress_markers``
    (:data:`~tap_salesforce_groups.sdk.PROGRESS_MARKERS`)
    and promotes it to the bookmark when ``get_records`` returns, even if reading stopped
    early: after an unsorted read that would skip rows not yet emitted. The bookmark the
    stream committed itself (per row on REST, per window on Bulk) is the one to keep.
    """
    state.pop(PROGRESS_MARKERS, None)


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
        groups: list[tuple[str, str]] | None = None,
        properties: list[tuple[str, str, str]] | None = None,
    ) -> None:
        super().__init__(tap=tap, schema=schema, name=name)
        self.primary_keys = key_properties
        self.replication_key = replication_key
        self.client = client
        self.run = run
        props = schema.get("properties", {})
        self.fields = list(props)
        self._datetime_fields = [k for k, v in props.items() if v.get("format") == "date-time"]
        self._described: dict[str, Any] = {}  # see DESCRIBED
        # (group type, group name field) of each mapping of this object: its groups' identity.
        self.groups = sorted(groups or [(name, key_properties[0] if key_properties else "Id")])
        # (group type, field, property) of each mapped property: what each field is sent as.
        self.sent_as = sorted([t, f.lower(), p] for t, f, p in properties or [])

    @property
    def is_sorted(self) -> bool:
        """False: Bulk rows come unsorted, so the SDK must not move the bookmark per record.

        The stream commits the bookmark itself: per row on REST, whose queries are sorted,
        and per completed window on Bulk, whose are not.
        """
        return False

    # -- the read, in one screen ---------------------------------------------------------------
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """Read the object: from the bookmark, then children of changed parents, then new fields.

        The last is a full read of new or calculated fields; the read stops cleanly when told to.
        """
        if self.run.stopped_reason:
            self.logger.warning("Skipping %s: %s", self.name, self.run.stopped_reason)
            self.run.skipped(self.name)
            return
        state = self.get_context_state(context)
        try:
            yield from self._sync(state)
        except StopRun as exc:
            self.run.stop(
                f"{exc}; state saved, the next run resumes",
                failed=exc.failed,
                exit_code=exc.exit_code,
                partial=True,
            )
        except SalesforceClientError as exc:
            self.run.stop(str(exc), failed=True)
        except RunInterrupted:
            self.logger.warning("%s: stopped reading on a signal; state saved", self.name)
        finally:
            drop_sdk_progress_marker(state)
            self.logger.info(self.client.usage_line())

    def _sync(self, state: dict[str, Any]) -> Iterator[dict[str, Any]]:
        key = self.replication_key
        if key is None:  # full table every run: nothing to look back on
            yield from self._run_pass(Pass(self.name, state, None, self.fields))
            return
        self._check_identity(state)
        previous = state.get("replication_key_value")
        self.client.sf  # noqa: B018 (log in first: the server's clock comes with its answers)
        run_start = self.client.server_now()
        state["replication_key"] = key
        self._described = self._describe_fields(state, self._formulas_due(state, run_start))
        fields = self.fields
        parents: tuple[tuple[str, dict[str, Any]], ...] = ()
        if previous is None:  # a full read: its rows carry every parent's value from now on
            parents_from = record_datetime(run_start - BULK_COMMIT_MARGIN)
            relations = self._relationships()
            slots: dict[str, dict[str, Any]] = {
                r.chain: {"replication_key_value": parents_from} for r in relations
            }
            state[RELATIONSHIPS] = slots
            # The next run's relationship passes look back from before this read (late commits):
            # the parent stamp each row carried is remembered, so they do not send it again.
            parents = tuple((r.key, slots[r.chain]) for r in relations if r.key is not None)
            fields = [*self.fields, *(k for k, _ in parents if k not in self.fields)]
            for relation in relations:
                if relation.key is None:
                    self._note_changed_parents(slots[relation.chain], relation)
        yield from self._run_pass(Pass(self.name, state, key, fields, parents=parents))
        if self.run.stopped_reason:
            return
        if previous is None:  # every field and formula is fresh too
            self._fields_read(state)
            state[FORMULAS_READ_AT] = record_datetime(run_start)
            state[REFRESH] = None  # not popped: Meltano's merge of partial states keeps keys
            return
        yield from self._parents_changed(state, str(previous))
        if self.run.stopped_reason:
            return
        yield from self._refresh(state, run_start)

    def _check_identity(self, state: dict[str, Any]) -> None:
        """A new group type or group name field starts a full read under the new identity."""
        identity = [list(g) for g in self.groups]
        old = state.get(IDENTITY)
        state[IDENTITY] = identity
        if not isinstance(old, list) or old == identity:
            return
        gone = [g for g in old if g not in identity]
        if gone:
            self.logger.warning(
                "%s: groups %s are no longer mapped; they stay in Amplitude with their last values",
                self.name,
                ", ".join(f"'{t}' by {f}" for t, f in gone),
            )
        new = [g for g in identity if g not in old]
        if new and state.get("replication_key_value") is not None:
            self.logger.warning(
                "%s: new group identity %s; reading every row again to send it",
                self.name,
                ", ".join(f"'{t}' by {f}" for t, f in new),
            )
            for slot_key in ("replication_key_value", LEGACY_EMITTED, RELATIONSHIPS, REFRESH):
                state[slot_key] = None  # not popped: Meltano's merge of partial states keeps keys
            state[EMITTED] = [{}]

    # -- relationship paths ------------------------------------------------------------------
    def _formulas_due(self, state: dict[str, Any], run_start: datetime) -> bool:
        hours = float(self.config.get("formula_refresh_hours", 24))
        last = state.get(FORMULAS_READ_AT)
        return last is None or formulas_due(parse_datetime(str(last)), run_start, hours)

    def _describe_fields(self, state: dict[str, Any], again: bool) -> dict[str, Any]:
        """The relationship hops and calculated fields of the mapped fields.

        From the state when it has them for these fields, else from describe (kept in the state).
        """
        kept = state.get(DESCRIBED)
        if (
            isinstance(kept, dict)
            and kept.get("fields") == self.fields
            and all(len(r) == 5 for r in kept.get("relationships", []))  # the shape this version writes
            and not again
        ):
            return kept
        found = (
            relationships(self.name, self.fields, self.client.describe)
            if any("." in f for f in self.fields)
            else []
        )
        described = {
            "fields": list(self.fields),
            "relationships": [[r.chain, r.key, list(r.types), r.reference, list(r.type_keys)] for r in found],
            "calculated": calculated_fields(self.name, self.fields, self.client.describe),
        }
        state[DESCRIBED] = described
        return described

    def _relationships(self) -> list[Relationship]:
        return [
            Relationship(str(chain), key, tuple(types), str(reference), tuple(keys))
            for chain, key, types, reference, keys in self._described.get("relationships", [])
        ]

    def _parents_changed(self, state: dict[str, Any], previous: str) -> Iterator[dict[str, Any]]:
        """Read again the rows whose parent changed.

        A renamed owner changes ``Owner.Name`` on every account it owns and moves no account's stamp. Each
        relationship keeps its own bookmark (the parents' newest stamp read) and memory, with the same
        lookback.
        """
        slots = state.get(RELATIONSHIPS)
        slots = slots if isinstance(slots, dict) else {}
        wanted = self._relationships()
        state[RELATIONSHIPS] = slots = {r.chain: slots.get(r.chain) or {} for r in wanted}
        for relation in wanted:
            slot = slots[relation.chain]
            slot.setdefault("replication_key_value", previous)  # new here: from the last run on
            label = f"{self.name} via {relation.chain}"
            if relation.key is not None:
                fields = [*self.fields, *([relation.key] if relation.key not in self.fields else [])]
                yield from self._run_pass(Pass(label, slot, relation.key, fields, counted=False))
            else:
                yield from self._children_of_changed(label, slot, relation)
            if self.run.stopped_reason:
                return

    def _children_of_changed(
        self, label: str, slot: dict[str, Any], relation: Relationship
    ) -> Iterator[dict[str, Any]]:
        """A polymorphic parent (Owner on Case, What/Who on Task).

        SOQL reads it through the Name object, which has no stamp, so find the changed parents of each type,
        then their children by ``OwnerId IN (…)`` (real-org-facts-2.md, "Parents and formulas").
        """
        memory = Memory(slot)
        start = self._start(slot.get("replication_key_value"))
        found: dict[str, str] = {}  # parent id -> stamp
        for parent, parent_key in zip(relation.types, relation.type_keys, strict=True):
            for row in self._changed_parents(parent, parent_key, start):
                stamp = iso_datetime(str(row[parent_key]))
                if not memory.seen(str(row["Id"]), stamp):
                    found[str(row["Id"])] = stamp
        changed = sorted((stamp, parent_id) for parent_id, stamp in found.items())  # oldest first
        bulk = self.config["api_type"] == "bulk"
        for at in range(0, len(changed), CHILDREN_PER_QUERY):
            batch = changed[at : at + CHILDREN_PER_QUERY]
            where = in_ids(relation.reference, [parent_id for _, parent_id in batch])
            soql = build_soql(self.name, self.fields, extra=where)
            self.logger.info("Querying %s (%s): %s", label, "Bulk API 2.0" if bulk else "REST", soql[:300])
            rows = (
                self._bulk_records(soql, self.fields, {}) if bulk else self._rest_records(soql, self.fields)
            )
            yield from self._until_stopped(rows)
            if self.run.stopped_reason:
                return
            for stamp, parent_id in batch:  # their children are out: commit these parents
                memory.note(parent_id, stamp)
            slot["replication_key_value"] = max(str(slot.get("replication_key_value") or ""), batch[-1][0])
        memory.trim(self._floor(slot.get("replication_key_value")), slot.get("replication_key_value"))

    def _note_changed_parents(self, slot: dict[str, Any], relation: Relationship) -> None:
        """Before a first read: remember the polymorphic parents the next run would find changed.

        Their rows are read through the Name object, which has no stamp to remember them by. A
        parent this query sees had committed its change before the first read began, so every row
        that read gets carries it; one that changes again gets a new stamp and is read again.
        """
        memory = Memory(slot)
        start = self._start(slot.get("replication_key_value"))
        for parent, parent_key in zip(relation.types, relation.type_keys, strict=True):
            for row in self._changed_parents(parent, parent_key, start):
                memory.note(str(row["Id"]), iso_datetime(str(row[parent_key])))

    def _changed_parents(self, parent: str, key: str, start: datetime | None) -> Iterator[dict[str, Any]]:
        """Rows of ``parent`` stamped from ``start`` on; on QUERY_TIMEOUT, in halving windows."""
        window, size = Window(start), None
        while True:
            soql = build_soql(parent, ["Id", key], replication_key=key, window=window)
            try:
                for page in self.client.query_pages(soql, include_deleted=False):
                    yield from page
            except QueryTooBig as exc:
                first = window.start or SALESFORCE_EPOCH
                size = ((window.end or self.client.server_now()) - first) / 2
                if size < MIN_WINDOW:
                    raise SalesforceClientError(f"{exc}; even a {MIN_WINDOW} window fails") from exc
                self.logger.warning("%s: %s; reading in windows of %s", parent, exc, size)
                window = Window(first, first + size)
                continue
            if window.end is None:
                return
            window = self._next_window(window, size)

    # -- new fields and formulas ------------------------------------------------------------
    def _refresh(self, state: dict[str, Any], run_start: datetime) -> Iterator[dict[str, Any]]:
        """Read every row again for fields that changed without a stamp.

        Fields new to the mapping (so existing groups get them, no flag needed) and, every
        formula_refresh_hours, formula and roll-up fields. Only those fields and the group name fields are
        read: the target leaves absent keys alone.
        """
        read_before = state.get(FIELDS_READ)
        known = {f.lower() for f in read_before} if isinstance(read_before, list) else None
        new = [f for f in self.fields if known is not None and f.lower() not in known]
        new += [f for f in self._sent_as_changed(state) if f not in new]
        refresh = state.get(REFRESH) if isinstance(state.get(REFRESH), dict) else None
        hours = float(self.config.get("formula_refresh_hours", 24))
        due = self._formulas_due(state, run_start)
        calculated = [str(f) for f in self._described.get("calculated", [])]
        needed = set(new) | (set(calculated) if due else set())
        if refresh is not None:
            needed |= {f for f in refresh.get("fields", []) if f in self.fields}
        if not calculated and due:
            state[FORMULAS_READ_AT] = record_datetime(run_start)  # nothing to refresh yet
        if not needed:
            state[REFRESH] = None  # not popped: Meltano's merge of partial states keeps keys
            self._fields_read(state)
            return
        if refresh is None or set(refresh.get("fields", [])) != needed:
            refresh = {"fields": sorted(needed), "started": record_datetime(run_start)}
            state[REFRESH] = refresh
            self.logger.info(
                "%s: reading every row again for %s (%s)",
                self.name,
                ", ".join(sorted(needed)),
                "new in the mapping"
                if set(new) >= needed
                else f"formula or roll-up fields, which change without a timestamp; every {hours:g} h",
            )
        fields = [f for f in self.fields if f in needed or f in self._base_fields()]
        yield from self._run_pass(
            Pass(f"{self.name} (full read of {len(needed)} fields)", refresh, self.replication_key, fields)
        )
        if self.run.stopped_reason:
            return
        if set(calculated) <= set(refresh["fields"]):
            state[FORMULAS_READ_AT] = refresh["started"]
        self._fields_read(state)
        state[REFRESH] = None

    def _fields_read(self, state: dict[str, Any]) -> None:
        """Record what a complete read covered: the fields, and the property each is sent as."""
        state[FIELDS_READ] = list(self.fields)
        if self.sent_as:
            state[SENT_AS] = self.sent_as

    def _sent_as_changed(self, state: dict[str, Any]) -> list[str]:
        """Fields now sent as a property (or for a group type) they were not sent as before.

        A renamed property must reach every existing group too. State from before this key: none.
        """
        before = state.get(SENT_AS)
        if not isinstance(before, list) or not self.sent_as:
            return []
        known = {tuple(entry) for entry in before if isinstance(entry, list)}
        changed = {f for t, f, p in self.sent_as if (t, f, p) not in known}
        return [f for f in self.fields if f.lower() in changed]

    def _base_fields(self) -> set[str]:
        """What a partial read always selects: Id, the stamp, IsDeleted, the group name fields."""
        names = {g[1].lower() for g in self.groups}
        base = {f for f in self.fields if f.lower() in names}
        return base | {f for f in ("Id", "IsDeleted", str(self.replication_key)) if f in self.fields}

    # -- one pass ------------------------------------------------------------------------------
    def _run_pass(self, p: Pass) -> Iterator[dict[str, Any]]:
        """Read ``p`` window by window from its bookmark less the lookback.

        A row already emitted with the same stamp is skipped; the bookmark moves per row (sorted REST) or per
        completed window (unsorted Bulk), never past a Bulk job's createdDate less a margin.
        """
        slot, key = p.slot, p.key
        memory = Memory(slot) if key is not None else None
        start = self._start(slot.get("replication_key_value")) if key is not None else None
        progress = Progress(self.logger, p.label, delivered=len(memory.pairs) if memory else 0)
        extra = key is not None and key not in self._datetime_fields  # a parent's stamp: raw text
        emit = [f for f in p.fields if f in self.fields]
        strip = len(emit) != len(p.fields)
        window, size = Window(start), None
        initial = slot.get("replication_key_value")  # a re-query may start at a bookmark moved since
        bulk = self._use_bulk(p, window, progress)  # Bulk rows come unsorted (PK chunking)
        if bulk and not p.counted and not self._any_rows(p, window):
            return  # no parent changed: one COUNT() instead of a Bulk job's four calls
        checked = window
        # A full read's parents: (key, memory, oldest stamp the next relationship pass reads).
        noting = [(k, Memory(s), self._floor(s.get("replication_key_value"))) for k, s in p.parents]
        while True:
            if not bulk and window != checked:
                checked = window
                bulk = self._rest_too_long(p, window)  # a bounded window makes the query longer
            job: dict[str, Any] = {}
            newest: str | None = None
            try:
                for record in self._read(p, window, bulk, progress, job):
                    if memory is None or key is None:
                        yield record
                        continue
                    stamp, record_id = record[key], record["Id"]
                    if stamp is not None:
                        if extra:
                            stamp = iso_datetime(str(stamp))
                        if memory.seen(record_id, stamp):
                            continue
                        memory.note(record_id, stamp)
                        if newest is None or stamp > newest:
                            newest = stamp
                        if not bulk:
                            slot["replication_key_value"] = stamp  # sorted: all before it is out
                        if memory.full:  # keeps every STATE small, also mid-read
                            bound = self._bound(slot, window, newest, job, bulk)
                            memory.trim(self._floor(bound), bound)
                    for parent_key, parent_memory, floor in noting:
                        parent_stamp = record.get(parent_key)
                        if parent_stamp is not None:
                            parent_stamp = iso_datetime(str(parent_stamp))
                            if floor is None or parent_stamp >= floor:  # older: not read again
                                parent_memory.note(record_id, parent_stamp)
                    yield {f: record[f] for f in emit} if strip else record
            except BulkNotSupported as exc:
                if not bulk:
                    raise
                # Nothing of this window was read: read it again, and the rest, through REST.
                self.logger.warning("%s: %s; reading it through REST instead", p.label, exc)
                bulk = False
                continue
            except (QueryTooBig, QueryCursorExpired) as exc:
                if isinstance(exc, QueryTooBig):
                    window, size = self._smaller_window(p, window, size, exc, initial)
                else:
                    self.logger.warning("Query cursor expired on %s; re-querying", p.label)
                    window = Window(self._position(slot, window, bulk, initial), window.end)
                continue
            if self.run.stopped_reason:
                return
            if bulk and memory is not None:
                self._commit_window(slot, window, newest, job)
            if window.end is None:
                break
            window = self._next_window(window, size)
        for (_, parent_memory, floor), (_, parent_slot) in zip(noting, p.parents, strict=True):
            parent_memory.trim(floor, parent_slot.get("replication_key_value"))
        if memory is not None:
            memory.trim(self._floor(slot.get("replication_key_value")), slot.get("replication_key_value"))
            if memory.dropped:
                self.logger.warning(
                    "%s: more than %d rows changed within lookback_seconds; forgot the oldest %d "
                    "of them, which the next run may send again",
                    p.label,
                    memory.limit,
                    memory.dropped,
                )

    def _read(
        self, p: Pass, window: Window, bulk: bool, progress: Progress, job: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        """Records of one window through REST or Bulk; a signal may interrupt the wait for them."""
        soql = build_soql(
            self.name,
            p.fields,
            replication_key=p.key,
            window=window,
            limit=self.ABORT_AT_RECORD_COUNT,  # under --test, ask for no more than the SDK keeps
            ordered=not bulk,
            extra=p.where,
        )
        self.logger.info("Querying %s (%s): %s", p.label, "Bulk API 2.0" if bulk else "REST", soql)
        rows = self._bulk_records(soql, p.fields, job) if bulk else self._rest_records(soql, p.fields)
        yield from self._until_stopped(progress.track(rows))

    def _until_stopped(self, rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        while not self.run.stopped_reason:
            self.run.waiting = True
            try:
                record = next(rows, None)
            finally:
                self.run.waiting = False
            if record is None:
                return
            yield record

    def _bound(
        self, slot: dict[str, Any], window: Window, newest: str | None, job: dict[str, Any], bulk: bool
    ) -> str | None:
        """The lowest bookmark this window can still commit.

        The memory below it less the lookback is never needed again.
        """
        if not bulk:
            return slot.get("replication_key_value")
        candidates = [c for c in (newest, self._cap(job)) if c is not None]
        if window.end is not None:
            candidates.append(record_datetime(window.end))
        return min(candidates) if candidates else slot.get("replication_key_value")

    @staticmethod
    def _cap(job: dict[str, Any]) -> str | None:
        created = job.get("createdDate")
        return record_datetime(parse_datetime(str(created)) - BULK_COMMIT_MARGIN) if created else None

    def _commit_window(
        self, slot: dict[str, Any], window: Window, newest: str | None, job: dict[str, Any]
    ) -> None:
        """An unsorted window was read whole.

        Commit its end (when open, the newest row), but never past the job's createdDate less the margin, and
        never backwards.
        """
        done = record_datetime(window.end) if window.end is not None else newest
        cap = self._cap(job)
        if done is None:
            return  # nothing read, nothing to commit
        if cap is not None and cap < done:
            done = cap
        old = slot.get("replication_key_value")
        if old is None or parse_datetime(str(old)) < parse_datetime(done):
            slot["replication_key_value"] = done

    # -- where to read ---------------------------------------------------------------------------
    @property
    def _lookback(self) -> timedelta:
        return timedelta(seconds=int(self.config.get("lookback_seconds", 600)))

    def _start(self, bookmark: Any) -> datetime | None:
        """Where a read starts: the bookmark less lookback_seconds, not before start_date."""
        start = parse_datetime(str(bookmark)) - self._lookback if bookmark is not None else None
        configured = self.config.get("start_date")
        if configured:
            first = parse_datetime(str(configured))
            if start is None or first > start:
                start = first
        return start

    def _floor(self, bookmark: Any) -> str | None:
        """The oldest stamp the next read from ``bookmark`` can return."""
        start = self._start(bookmark)
        return record_datetime(start) if start is not None else None

    def _use_bulk(self, p: Pass, window: Window, progress: Progress) -> bool:
        """Bulk API 2.0 for big objects (api_type auto), always (bulk), or when the REST URI would be too long."""
        api_type = self.config["api_type"]
        if self._rest_too_long(p, window):
            return True
        if api_type != "auto" or self.ABORT_AT_RECORD_COUNT is not None or not p.counted:
            return bool(api_type == "bulk")
        count = build_soql(self.name, [], replication_key=p.key, window=window, count=True, extra=p.where)
        try:
            rows = self.client.count(count, include_deleted=self._include_deleted)
        except QueryTooBig:
            self.logger.info("%s: counting the rows timed out; using Bulk API 2.0", p.label)
            return True
        return progress.expect(rows, bulk_from=int(self.config["bulk_threshold"]))

    def _rest_too_long(self, p: Pass, window: Window) -> bool:
        """True when the REST request for ``window`` (URI and headers) passes Salesforce's limit.

        Then Bulk API 2.0 reads it, or, with api_type rest, the run stops with one line. Windows lengthen the
        query (a second bound), so each new window is checked again.
        """
        soql = build_soql(self.name, p.fields, replication_key=p.key, window=window, extra=p.where)
        size = self.client.rest_request_bytes(soql, include_deleted=self._include_deleted)
        if size <= MAX_URI_BYTES:
            return False
        if self.config["api_type"] == "rest":
            msg = (
                f"{self.name}: the REST query request (URI and headers) would be {size} bytes, above "
                f"Salesforce's {MAX_URI_BYTES}; set api_type to auto or bulk for this many fields"
            )
            raise SalesforceClientError(msg)
        self.logger.info(
            "%s: %d fields make a %d-byte REST request (URI and headers); using Bulk API 2.0",
            self.name,
            len(p.fields),
            size,
        )
        return True

    def _any_rows(self, p: Pass, window: Window) -> bool:
        """Whether the pass has rows to read (a COUNT() that times out says yes)."""
        count = build_soql(self.name, [], replication_key=p.key, window=window, count=True, extra=p.where)
        try:
            return self.client.count(count, include_deleted=self._include_deleted) > 0
        except QueryTooBig:
            return True

    def _position(
        self, slot: dict[str, Any], window: Window, bulk: bool, initial: Any = None
    ) -> datetime | None:
        """Where a re-query starts.

        The committed bookmark when this read moved it inside the window (its rows emitted already are skipped
        by the memory), else the window's start.

        The bookmark the read started from is not a position: the read began lookback_seconds
        before it, and rows committed late into that span are not read yet (nor are rows the
        memory skipped, which do not move the bookmark).
        """
        bookmark = slot.get("replication_key_value")
        if not bulk and bookmark is not None and bookmark != initial:
            at = parse_datetime(str(bookmark))
            if window.start is None or at >= window.start:
                return at
        return window.start

    def _smaller_window(
        self, p: Pass, window: Window, size: timedelta | None, exc: QueryTooBig, initial: Any = None
    ) -> tuple[Window, timedelta]:
        """Half the window that failed, from where reading stopped; fail below MIN_WINDOW."""
        if not p.key:
            raise SalesforceClientError(f"{exc} ({self.name} has no SystemModstamp to read it in windows)")
        start = self._position(p.slot, window, bulk=False, initial=initial) or self._oldest(p)
        now = self.client.server_now()
        span = (window.end or now) - start
        size = min(size, span) / 2 if size else span / 2
        if size < MIN_WINDOW:
            raise SalesforceClientError(f"{exc}; even a {MIN_WINDOW} window fails")
        shown = timedelta(seconds=round(size.total_seconds()))
        self.logger.warning(
            "%s: %s; reading in windows of %s from %s", p.label, exc, shown, start.isoformat()
        )
        return Window(start, start + size), size

    def _next_window(self, window: Window, size: timedelta | None) -> Window:
        """The window after ``window``; open (to now) once it would reach the server's now."""
        now = self.client.server_now()
        start = window.end or now
        end = start + size if size else None
        return Window(start, end if end and end < now else None)

    def _oldest(self, p: Pass) -> datetime:
        """The oldest key value: the start of the first window (one indexed row).

        When even that query times out, windows start at start_date, else before any org existed.
        """
        key = str(p.key)
        configured = self.config.get("start_date")
        if configured:
            return parse_datetime(str(configured))
        soql = build_soql(self.name, ["Id", key], replication_key=key, limit=1, extra=p.where)
        try:
            for page in self.client.query_pages(soql, include_deleted=self._include_deleted):
                for row in page:
                    value: Any = row
                    for hop in key.split("."):
                        value = value.get(hop) if isinstance(value, dict) else None
                    if value is not None:
                        return parse_datetime(str(value))
        except QueryTooBig as exc:
            self.logger.warning("%s: %s; reading in windows from %s", p.label, exc, SALESFORCE_EPOCH.date())
            return SALESFORCE_EPOCH
        return self.client.server_now()

    @property
    def _include_deleted(self) -> bool:
        return bool(self.config["include_deleted"]) and "IsDeleted" in self.fields

    # -- records -----------------------------------------------------------------------------------
    def _rest_records(self, soql: str, fields: list[str]) -> Iterator[dict[str, Any]]:
        """Flat records from REST pages: ``Owner.Name`` becomes a top-level key (canonical names).

        The next page downloads while this one is parsed and written out (the budget is still
        checked before each next page is asked for).
        """
        pages = self.client.query_bodies(soql, include_deleted=self._include_deleted)
        plan = [(path, hops if len(hops) > 1 else None) for path in fields for hops in [path.split(".")]]
        datetime_fields = [f for f in self._datetime_fields if f in fields]
        for page in prefetch(pages, name=f"{self.name}-pages"):
            for raw in page.records:  # parsed here, while the next page downloads
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

    def _bulk_records(self, soql: str, fields: list[str], job: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Typed records from Bulk CSV pages, whose header holds the canonical names we selected.

        Each page is parsed by column: the header is read once, and a cell is cast only when
        its type needs it (text stays text).
        """
        convert = self._csv_converters()
        pages = self.client.bulk_pages(self.name, soql, include_deleted=self._include_deleted, job_info=job)
        for page, content in enumerate(pages, start=1):
            rows = csv.reader(csv_lines(content))  # parsed lazily: memory holds the page's bytes
            header = next(rows, None)
            if header is None:
                continue
            index = {name: i for i, name in enumerate(header)}
            missing = [f for f in fields if f not in index]
            if missing:
                raise SalesforceClientError(f"Bulk results for {self.name} lack columns {missing}")
            plan = [(f, index[f], convert.get(f)) for f in fields]
            width = len(header)
            for row in rows:
                if len(row) != width:  # a cut or damaged page: its cells would land in the wrong fields
                    raise SalesforceClientError(
                        f"Bulk API 2.0 job {self.client.bulk_job_id} on {self.name}: results page {page}, "
                        f"line {rows.line_num} has {len(row)} columns where the header has {width}"
                    )
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
