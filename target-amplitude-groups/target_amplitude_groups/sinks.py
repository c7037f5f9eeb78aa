"""The sink.

A stream's records become identifications, sent while the batch is read and acknowledged a batch at a time.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from singer_sdk.sinks import BatchSink

from groups_mapping import GroupMapping, deleted_flags, is_signed
from target_amplitude_groups.errors import StreamMismatch
from target_amplitude_groups.identify import (
    DATELIKE_FORMATS,
    MAX_STRING,
    IdentificationBuilder,
    Skip,
    parse_datelike,
)

if TYPE_CHECKING:
    from target_amplitude_groups.target import TargetAmplitudeGroups

SDC_PREFIX = "_sdc_"


class AmplitudeGroupsSink(BatchSink):
    """Writes one stream's records as Amplitude group properties."""

    # Records per batch. A batch ends with at most one partly filled request, so larger batches
    # waste fewer requests (under 1% at 10,000 records of 12 properties); a kill -9 resends at
    # most about one batch.
    MAX_SIZE_DEFAULT = 10000

    def __init__(
        self,
        target: TargetAmplitudeGroups,
        stream_name: str,
        schema: dict[str, Any],
        key_properties: list[str] | None,
    ) -> None:
        super().__init__(target, stream_name, schema, key_properties)
        # Dates are parsed here rather than by the SDK, which fails the whole run on one value
        # that does not parse; the SDK sees the schema without their formats.
        self.datelike = _datelike_fields(self.schema)
        if self.datelike:
            self.schema = _without_formats(self.schema, self.datelike)
        self.amplitude = target
        self.mappings = self._mappings_for(stream_name, schema, key_properties or [])
        self.flags = self._flags()
        # One builder per sink: sinks drain in parallel threads, so nothing mutable is shared.
        self.builder = IdentificationBuilder(target.options, self.logger)
        # Records are not kept in the SDK's batch context, which the SDK logs at DEBUG after
        # every record (whole, so the log would grow with the square of the batch): they go
        # straight to the outbox, packed into requests that leave as soon as they are full.
        self.outbox = target.delivery.outbox()
        self._skipped = self._deleted = self._truncated_counted = 0
        self._in_batch = 0  # records of the batch being read

    def _mappings_for(self, stream: str, schema: dict[str, Any], keys: list[str]) -> tuple[GroupMapping, ...]:
        target = self.amplitude
        fields = schema.get("properties", {})
        if target.mapping is not None:
            mappings = target.mapping.for_object(stream)
            if not mappings:
                self.logger.warning("Stream '%s' is not in the mapping; its records are ignored", stream)
            return tuple(self._resolve(m, stream, fields) for m in mappings)
        if is_signed(schema):
            raise StreamMismatch(
                f"stream '{stream}' comes from tap-salesforce-groups, whose streams need the mapping: "
                "set the target's mapping_file (or mapping) to the tap's. Without it every field, "
                f"SystemModstamp and IsDeleted included, would become a property of a group type '{stream}'"
            )
        if len(keys) != 1:
            self.logger.warning(
                "Stream '%s' has %s key properties; without a mapping the single key property is the "
                "group value, so its records are ignored",
                stream,
                len(keys) or "no",
            )
            return ()
        return (self._generic_mapping(stream, keys[0], fields),)

    def _flags(self) -> tuple[str, ...]:
        """Each mapping's deleted flag (``deleted_records: flag``), scoped to its object."""
        target = self.amplitude
        name = target.options.deleted_property
        if target.mapping is None:
            return tuple(name for _ in self.mappings)
        flags = deleted_flags(target.mapping, name)
        return tuple(flags[m.index] for m in self.mappings)

    def _resolve(self, mapping: GroupMapping, stream: str, fields: dict[str, Any]) -> GroupMapping:
        return spelled_as_stream(mapping, stream, fields)

    def _generic_mapping(self, stream: str, key: str, fields: dict[str, Any]) -> GroupMapping:
        """Without a mapping: group type = stream, group value = key, properties = other fields."""
        keep_sdc = bool(self.amplitude.config["keep_sdc_columns"])
        names = [f for f in fields if keep_sdc or not f.startswith(SDC_PREFIX)]
        if len(stream) > MAX_STRING or not stream.strip():
            raise StreamMismatch(f"stream '{stream[:60]}': not usable as an Amplitude group type")
        options = self.amplitude.options
        if options.deleted_records == "flag" and options.deleted_property in names:
            raise StreamMismatch(
                f"stream '{stream}' has a field '{options.deleted_property}', the property deleted_records "
                "flag writes; set deleted_property to another name"
            )
        bad = [f for f in names if f != key and (not f.strip() or f.startswith("$"))]
        if bad:
            raise StreamMismatch(
                f"stream '{stream}': field names {', '.join(repr(f) for f in bad)} cannot be Amplitude "
                "property names (empty or starting with '$'); rename or drop them with stream_maps"
            )
        mapping = GroupMapping.for_stream(stream, key, names)
        self.amplitude.note_generic_properties(p.property for p in mapping.properties)
        return mapping

    def preprocess_record(self, record: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        """Dates, times and date-times as Python values; one that does not parse is marked as such."""
        for name, kind in self.datelike.items():
            value = record.get(name)
            if type(value) is str:
                record[name] = parse_datelike(kind, value)
        return record

    @property
    def current_size(self) -> int:
        """Records since the last drain; at least 1 while this sink has records not yet acknowledged.

        The SDK does not drain a sink whose size is 0, and writes STATE after the drain. A
        checkpoint's drain leaves the records read after its STATE in the outbox (in requests in
        flight, or packed and not yet sent) while the SDK counts the sink as drained: the next
        drain must still take them, so that its STATE waits for them too.
        """
        return super().current_size or int(self.outbox.unsettled() or self.outbox.holding())

    @property
    def is_full(self) -> bool:
        """Never: a batch's requests leave as they fill, and its end is marked in process_record.

        The SDK drains a full sink itself (``drain_one``), and a sink it finds empty is not
        drained at all, so a drain could then write STATE without waiting for requests this sink
        still has in flight. Marking batch ends here instead keeps every drain a wait for all
        of them (``process_batch``), whenever and however the SDK drains.
        """
        return False

    def process_record(self, record: dict[str, Any], context: dict[str, Any]) -> None:
        """Build the record's identifications and hand them to the outbox.

        The outbox sends each request as soon as it is full, while the rest of the batch is
        read. Every ``batch_size_rows`` records the batch ends: its partly filled request goes
        too, and the next STATE is worth a checkpoint.
        """
        self._in_batch += 1
        if self.mappings:
            self._add(record)
        if self._in_batch >= self.max_size:
            self._in_batch = 0
            self._account()
            self.outbox.end_batch()
            self.amplitude.delivery.batch_delivered()

    def _add(self, record: dict[str, Any]) -> None:
        if record.get("IsDeleted") is True and self.amplitude.options.deleted_records == "ignore":
            self._deleted += 1
            return
        build, outbox, flags = self.builder.build, self.outbox, self.flags
        for n, mapping in enumerate(self.mappings):
            try:
                identification = build(mapping, record, flags[n] if flags else None)
            except Skip as exc:
                name = record.get("Id") or {k: record.get(k) for k in list(record)[:3]}
                self._skipped += 1
                self.logger.warning("Skipped: %s record %s: %s", self.stream_name, name, exc)
                continue
            if identification is not None:
                outbox.add(identification)
        outbox.end_record()

    def _account(self) -> None:
        """Counts and left-out values of the batch so far, into the run's stats and files."""
        builder = self.builder
        problems, builder.bad_values = builder.bad_values, []
        self.amplitude.delivery.refuse_values(problems)
        self.amplitude.stats.add(
            skipped=self._skipped,
            deleted_ignored=self._deleted,
            truncated=builder.truncated - self._truncated_counted,
        )
        self._skipped = self._deleted = 0
        self._truncated_counted = builder.truncated

    def process_batch(self, context: dict[str, Any]) -> None:
        """Send the partly filled request; return once Amplitude acknowledged all this sink sent.

        The SDK writes STATE only after every sink's ``process_batch`` returned. Raising keeps
        STATE back. A checkpoint's drain waits only for the records before its STATE, and the
        batch goes on: its end stays every ``batch_size_rows`` records, however long the
        answers took (so which records share a request does not depend on timing).
        """
        if not self.outbox.barrier_pending:
            self._in_batch = 0
        self._account()
        self.outbox.finish()


def spelled_as_stream(mapping: GroupMapping, stream: str, fields: dict[str, Any]) -> GroupMapping:
    """The mapping with each field spelled as the stream spells it.

    Salesforce names are case-insensitive (a mapping may say ``industry`` for ``Industry``), so
    a field with no exact match takes the stream's only case-insensitive match. Also what the
    mapping editor's preview uses, so that it builds exactly what this sink sends.
    """
    by_folded: dict[str, list[str]] = {}
    for name in fields:
        by_folded.setdefault(name.casefold(), []).append(name)

    def spelled(field: str) -> str | None:
        if field in fields:
            return field
        matches = by_folded.get(field.casefold(), [])
        return matches[0] if len(matches) == 1 else None

    missing = [f for f in mapping.fields if spelled(f) is None]
    if missing:
        # A field the stream never sends would read as absent forever: refuse before
        # anything is sent rather than import groups without it.
        raise StreamMismatch(
            f"mapping {mapping.label}: stream '{stream}' has no field "
            f"{', '.join(repr(f) for f in missing)}; its fields are: {', '.join(fields) or 'none'}"
        )
    return replace(
        mapping,
        group_name_field=spelled(mapping.group_name_field) or mapping.group_name_field,
        properties=tuple(replace(p, field=spelled(p.field) or p.field) for p in mapping.properties),
    )


def _datelike_format(prop: Any) -> str | None:
    """``date-time``, ``date`` or ``time`` for a string property of that format (also in anyOf)."""
    if not isinstance(prop, dict):
        return None
    types = prop.get("type") or []
    if ("string" in types) and prop.get("format") in DATELIKE_FORMATS:
        return str(prop["format"])
    for option in prop.get("anyOf") or []:
        if found := _datelike_format(option):
            return found
    return None


def _datelike_fields(schema: dict[str, Any]) -> dict[str, str]:
    props = schema.get("properties") or {}
    return {name: kind for name, prop in props.items() if (kind := _datelike_format(prop))}


def _without_formats(schema: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A copy of the schema whose date-like properties are plain strings."""

    def plain(prop: dict[str, Any]) -> dict[str, Any]:
        copy = {k: v for k, v in prop.items() if k != "format"}
        if "anyOf" in copy:
            copy["anyOf"] = [plain(o) if isinstance(o, dict) else o for o in copy["anyOf"]]
        return copy

    props = dict(schema.get("properties") or {})
    for name in names:
        props[name] = plain(props[name])
    return {**schema, "properties": props}
