"""Preview: a few sample groups per mapping, exactly as the target would send them.

Per mapping, one small query (``LIMIT 5``) over the fields the tap's stream would read; each row
is flattened as the tap's REST read flattens it, written as the tap writes a Singer RECORD and
read back as the target reads one (numbers as decimals, dates parsed per the schema), then
built into identifications by the target's own code (:class:`IdentificationBuilder`, with the
null and deleted-row policies). Nothing is written anywhere and nothing is sent to Amplitude.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from singer_sdk.singerlib import RecordMessage

from groups_mapping import MappingError, deleted_flags, parse_mapping
from tap_salesforce_groups.client import SalesforceClient
from tap_salesforce_groups.errors import SalesforceClientError
from tap_salesforce_groups.schema import stream_spec
from tap_salesforce_groups.soql import build_soql
from tap_salesforce_groups.timestamps import iso_datetime
from tap_salesforce_groups.writer import FastSingerWriter

SAMPLE_ROWS = 5
# The target's settings that shape what is sent; under Meltano the editor runs as the tap's
# plugin, so the target's values come from its environment variables when they are set.
POLICIES: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "null_values": ("TARGET_AMPLITUDE_GROUPS_NULL_VALUES", ("unset", "skip")),
    "deleted_records": ("TARGET_AMPLITUDE_GROUPS_DELETED_RECORDS", ("ignore", "unset", "flag")),
    "deleted_property": ("TARGET_AMPLITUDE_GROUPS_DELETED_PROPERTY", None),  # any property name
}

log = logging.getLogger("tap-salesforce-groups.editor")


class PreviewError(ValueError):
    """The preview cannot be built: the message says why (one line)."""


def policies(given: Mapping[str, Any]) -> dict[str, str]:
    """The null and deleted-row policies: as given, else the target's environment, else its defaults."""
    from target_amplitude_groups.identify import Options  # noqa: PLC0415 (see _target)

    defaults = Options()
    chosen: dict[str, str] = {}
    for name, (variable, allowed) in POLICIES.items():
        value = str(given.get(name) or os.environ.get(variable) or getattr(defaults, name))
        if allowed is not None and value not in allowed:
            raise PreviewError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        chosen[name] = value
    return chosen


def _target() -> Any:
    """The target's modules; the editor runs without them when only the tap is installed."""
    try:
        import target_amplitude_groups.errors  # noqa: PLC0415
        import target_amplitude_groups.identify  # noqa: PLC0415
        import target_amplitude_groups.reader  # noqa: PLC0415
        import target_amplitude_groups.sinks  # noqa: PLC0415
    except ImportError as exc:
        msg = (
            "preview builds what target-amplitude-groups sends, so it needs that package installed "
            f"next to the tap ({exc.name} is missing); meltano.yml's pip_url installs it"
        )
        raise PreviewError(msg) from None
    return target_amplitude_groups


def _flatten(raw: Mapping[str, Any], fields: list[str], datetime_fields: set[str]) -> dict[str, Any]:
    """A REST record as the tap emits it: ``Owner.Name`` a top-level key, timestamps in ISO 8601."""
    record: dict[str, Any] = {}
    for path in fields:
        node: Any = raw
        for hop in path.split("."):
            node = node.get(hop) if isinstance(node, Mapping) else None
        if path in datetime_fields and isinstance(node, str):
            node = iso_datetime(node)
        record[path] = node
    return record


def _as_target_reads(
    stream: str, record: dict[str, Any], datelike: dict[str, str], target: Any
) -> dict[str, Any]:
    """The record after the Singer hop.

    The tap's writer, the target's reader, and the sink's parsing of dates
    (``AmplitudeGroupsSink.preprocess_record``).
    """
    line = FastSingerWriter().serialize_message(RecordMessage(stream=stream, record=record))
    decoded = target.reader.FastSingerReader().deserialize_json(bytes(line).decode("utf-8"))
    read: dict[str, Any] = decoded["record"]
    for name, kind in datelike.items():
        value = read.get(name)
        if type(value) is str:
            read[name] = target.identify.parse_datelike(kind, value)
    return read


def preview(
    document: Any, settings: Mapping[str, Any], client: SalesforceClient, options: Mapping[str, Any]
) -> dict[str, Any]:
    """Sample groups for each mapping of ``document``: ``{"policies", "mappings": [...]}``."""
    target = _target()
    chosen = policies(options)
    try:
        mapping = parse_mapping(document)
    except MappingError as exc:
        raise PreviewError(
            f"the mapping is invalid ({len(exc.problems)} problems): {exc.problems[0]}"
        ) from None
    include_deleted = bool(settings.get("include_deleted", True))
    flags = deleted_flags(mapping, chosen["deleted_property"])
    results = []
    for m in mapping.mappings:
        entry: dict[str, Any] = {
            "mapping": m.label,
            "object": m.object,
            "group_type": m.group_type,
            "groups": [],
            "skipped": [],
            "deleted_ignored": 0,
            "problems": [],
        }
        results.append(entry)
        try:
            spec = stream_spec(mapping, m.object, client.describe, include_deleted=include_deleted)
            if spec.problems:
                entry["problems"] = spec.problems
                continue
            fields = list(spec.schema["properties"])
            soql = build_soql(m.object, fields, limit=SAMPLE_ROWS, ordered=False)
            deleted = include_deleted and "IsDeleted" in fields
            page = next(iter(client.query_pages(soql, include_deleted=deleted)), [])
        except SalesforceClientError as exc:
            entry["problems"] = [str(exc)]
            continue
        entry["query"] = soql
        dates = {k for k, v in spec.schema["properties"].items() if v.get("format") == "date-time"}
        datelike = target.sinks._datelike_fields(spec.schema)  # the sink's own choice of fields
        records = [
            _as_target_reads(m.object, _flatten(raw, fields, dates), datelike, target)
            for raw in page[:SAMPLE_ROWS]
        ]
        try:
            resolved = target.sinks.spelled_as_stream(m, m.object, spec.schema["properties"])
        except target.errors.StreamMismatch as exc:  # what the run would stop on
            entry["problems"] = [str(exc)]
            continue
        builder = target.identify.IdentificationBuilder(target.identify.Options(**chosen), log)
        groups, skipped, ignored = builder.build_all((resolved,), records, m.object, (flags[m.index],))
        entry["groups"] = groups
        entry["skipped"] = skipped + [
            f"group {p.group_value}: property '{p.property}' left out: {p.reason}" for p in builder.bad_values
        ]
        entry["deleted_ignored"] = ignored
        entry["rows_read"] = len(records)
    return {"policies": chosen, "rows_per_mapping": SAMPLE_ROWS, "mappings": results}
