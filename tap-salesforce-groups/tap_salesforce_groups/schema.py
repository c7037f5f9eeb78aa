"""From Salesforce describe to Singer stream metadata: field types, relationship paths, bookmarks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from groups_mapping import GroupMapping, MappingConfig
from tap_salesforce_groups.errors import SalesforceClientError

# Replication keys in order of preference, as every mature Salesforce tap does.
REPLICATION_KEYS = ("SystemModstamp", "LastModifiedDate")

_STRING_TYPES = {
    "id",
    "string",
    "picklist",
    "textarea",
    "phone",
    "url",
    "reference",
    "multipicklist",
    "combobox",
    "encryptedstring",
    "email",
    "complexvalue",
    "masterrecord",
    "datacategorygroupreference",
    "time",
}
UNSUPPORTED_TYPES = {"base64", "json"}


def json_type(field: dict[str, Any]) -> dict[str, Any] | None:
    """JSON Schema for one describe field (nullable); ``None`` for types that cannot be imported.

    Compound address and location fields are ``None`` too: their components are fields of
    their own, flat properties that Amplitude can segment on.
    """
    sf_type = field.get("type")
    if sf_type in _STRING_TYPES:
        return {"type": ["string", "null"]}
    if sf_type in {"double", "currency", "percent"}:
        return {"type": ["number", "null"]}
    if sf_type in {"int", "long"}:
        return {"type": ["integer", "null"]}
    if sf_type == "boolean":
        return {"type": ["boolean", "null"]}
    if sf_type == "date":
        return {"type": ["string", "null"], "format": "date"}
    if sf_type == "datetime":
        return {"type": ["string", "null"], "format": "date-time"}
    if sf_type == "anyType":
        return {}
    return None


class FieldProblem(Exception):
    """A mapped field that the org does not have (or cannot import)."""


# SOQL resolves a polymorphic relationship (Owner on Case, Lead and queue-owned objects;
# What/Who on Task and Event) through the Name object, which has exactly these fields, with
# these types (Object Reference for the Salesforce Platform, "Name":
# https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_name.htm;
# SOQL and SOSL Reference, "Understanding Polymorphic Keys and Relationships").
NAME_OBJECT_DESCRIBE: dict[str, str] = {
    "Alias": "string",
    "Email": "email",
    "FirstName": "string",
    "Id": "id",
    "IsActive": "boolean",
    "LastName": "string",
    "LastReferencedDate": "datetime",
    "LastViewedDate": "datetime",
    "MiddleName": "string",
    "Name": "string",
    "NameOrAlias": "string",
    "Phone": "phone",
    "ProfileId": "reference",
    "RecordTypeId": "reference",
    "Title": "string",
    "Type": "picklist",
    "UserRoleId": "reference",
    "Username": "string",
}
NAME_OBJECT_FIELDS: dict[str, dict[str, Any]] = {
    name: json_type({"type": sf_type}) or {} for name, sf_type in NAME_OBJECT_DESCRIBE.items()
}
COMPOUND_TYPES = {"address", "location"}


@dataclass(frozen=True)
class ResolvedField:
    """A mapped field (possibly a relationship path) resolved against describe.

    ``path`` is the canonical spelling (describe's names), used in SOQL and as the record key.
    """

    path: str
    describe: dict[str, Any]
    schema: dict[str, Any]


def _named(items: Iterable[dict[str, Any]], key: str, name: str) -> dict[str, Any] | None:
    """The describe entry whose ``key`` equals ``name`` as Salesforce compares: ignoring case."""
    lowered = name.lower()
    return next((i for i in items if str(i.get(key) or "").lower() == lowered), None)


def resolve_field(object_name: str, path: str, describe: Callable[[str], dict[str, Any]]) -> ResolvedField:
    """Resolve ``Name`` or ``Owner.Manager.Name`` by following relationshipName → referenceTo."""
    current = object_name
    *hops, last = path.split(".")
    canonical: list[str] = []
    for n, hop in enumerate(hops):
        ref = _named(describe(current)["fields"], "relationshipName", hop)
        if ref is None or not ref.get("referenceTo"):
            msg = f"{object_name}: no relationship '{hop}' on {current} (in '{path}')"
            raise FieldProblem(msg)
        canonical.append(str(ref["relationshipName"]))
        targets = list(ref["referenceTo"])
        if len(targets) > 1 or ref.get("polymorphicForeignKey"):
            return _through_name_object(object_name, path, canonical, [*hops[n + 1 :], last], targets)
        current = targets[0]
    fields = describe(current)["fields"]
    field = _named(fields, "name", last)
    if field is None:
        where = f"{current} (in '{path}')" if hops else current
        msg = f"{object_name}: no field '{last}' on {where}"
        raise FieldProblem(msg)
    name = str(field["name"])
    if field.get("type") in COMPOUND_TYPES:
        parts = [str(f["name"]) for f in fields if f.get("compoundFieldName") == name]
        msg = (
            f"{object_name}: '{path}' is a compound {field['type']} field; map its components "
            f"{', '.join(parts)} instead"
        )
        raise FieldProblem(msg)
    schema = json_type(field)
    if schema is None:
        msg = f"{object_name}: field '{path}' has type '{field.get('type')}', which cannot be imported"
        raise FieldProblem(msg)
    return ResolvedField(".".join([*canonical, name]), field, schema)


def _through_name_object(
    object_name: str, path: str, canonical: list[str], rest: list[str], targets: list[str]
) -> ResolvedField:
    """A field behind a polymorphic lookup: exactly one of the Name object's fields."""
    field = next((f for f in NAME_OBJECT_FIELDS if len(rest) == 1 and f.lower() == rest[0].lower()), None)
    if field is None:
        msg = (
            f"{object_name}: '{path}' goes through the polymorphic lookup {canonical[-1]} "
            f"({' or '.join(targets)}), which SOQL reads through the Name object; use one of "
            f"{', '.join(NAME_OBJECT_FIELDS)}"
        )
        raise FieldProblem(msg)
    schema = NAME_OBJECT_FIELDS[field]
    described = {"name": field, "label": field, "type": NAME_OBJECT_DESCRIBE[field]}
    return ResolvedField(".".join([*canonical, field]), described, schema)


def replication_key_for(fields: Iterable[dict[str, Any]]) -> tuple[str | None, list[str]]:
    """The bookmark field this object offers, and the candidates passed over.

    SystemModstamp, else LastModifiedDate, else none: each only when describe says it is
    ``filterable``, since the bookmark goes into ``WHERE`` (some objects, such as
    ActivityFieldHistory, have a SystemModstamp that SOQL cannot filter on: INVALID_FIELD
    "can not be filtered in a query call"; airbytehq/airbyte PR #68166).
    """
    by_name = {str(f["name"]): f for f in fields}
    unfilterable = [k for k in REPLICATION_KEYS if k in by_name and by_name[k].get("filterable") is False]
    key = next((k for k in REPLICATION_KEYS if k in by_name and k not in unfilterable), None)
    return key, unfilterable


def group_name_warnings(mapping: GroupMapping, field: dict[str, Any]) -> list[str]:
    """Warnings for a group name field that may not identify one row (Amplitude expects it to)."""
    if field.get("type") == "id":
        return []
    name = mapping.group_name_field
    warnings = []
    if field.get("nillable"):
        warnings.append(
            f"{mapping.label}: group name field '{name}' can be empty; rows without a value are skipped"
        )
    if not field.get("unique"):
        warnings.append(
            f"{mapping.label}: group name field '{name}' is not unique; rows sharing a value update one group"
        )
    return warnings


@dataclass
class StreamSpec:
    """What describe says about one mapped object: its stream schema and what is wrong with it."""

    name: str
    schema: dict[str, Any]
    key_properties: list[str]
    replication_key: str | None
    problems: list[str]
    warnings: list[str]


def stream_spec(
    mapping: MappingConfig,
    name: str,
    describe: Callable[[str], dict[str, Any]],
    *,
    include_deleted: bool,
) -> StreamSpec:
    """Verify one mapped object against describe and build its schema in canonical names.

    Each field is selected once, however the mapping spells it (``id`` and ``Id`` are one
    field); Id, the replication key and IsDeleted are always read.
    """
    spec = StreamSpec(name, {}, [], None, [], [])
    object_describe = describe(name)
    if not object_describe.get("queryable", True):
        spec.problems.append(f"{name}: object is not queryable")
        return spec
    names = [str(f["name"]) for f in object_describe["fields"]]
    spec.replication_key, unfilterable = replication_key_for(object_describe["fields"])
    if unfilterable:
        fallback = (
            f"reading by {spec.replication_key}" if spec.replication_key else "every run reads all its rows"
        )
        spec.warnings.append(f"{name}: {', '.join(unfilterable)} cannot be filtered in SOQL; {fallback}")
    extra = ["Id", *([spec.replication_key] if spec.replication_key else [])]
    if include_deleted and "IsDeleted" in names:
        extra.append("IsDeleted")
    resolved: dict[str, ResolvedField] = {}  # mapping spelling -> canonical field
    for path in dict.fromkeys([*mapping.fields_for(name), *extra]):
        try:
            resolved[path] = resolve_field(name, path, describe)
        except FieldProblem as exc:
            spec.problems.append(str(exc))
    for m in mapping.for_object(name):
        if m.group_name_field in resolved:
            spec.warnings += group_name_warnings(m, resolved[m.group_name_field].describe)
        calculated = [
            p.field
            for p in m.properties
            if p.field in resolved and resolved[p.field].describe.get("calculated")
        ]
        if calculated:
            spec.warnings.append(
                f"{m.label}: {', '.join(calculated)}: formula or roll-up (calculated), which Salesforce "
                "changes without a timestamp; the tap reads it again in full every formula_refresh_hours "
                "(default 24), so Amplitude may be that far behind"
            )
    properties = {r.path: r.schema for r in resolved.values()}
    if "Id" in properties:
        properties["Id"] = {"type": "string"}
    spec.schema = {"type": "object", "properties": properties}
    key_fields = {
        resolved[m.group_name_field].path for m in mapping.for_object(name) if m.group_name_field in resolved
    }
    spec.key_properties = [key_fields.pop()] if len(key_fields) == 1 else ["Id"]
    return spec


@dataclass(frozen=True)
class Relationship:
    """A relationship hop chain the mapping reads through (``Owner``, ``Account__r.Owner``).

    Its parents can change without touching the child's stamp (a renamed owner), so the stream
    reads again the children of changed parents. ``key`` is the parent's stamp as a path from
    the child (``Owner.SystemModstamp``), for a SOQL filter; a polymorphic hop has none (SOQL
    reads it through the Name object, which has no stamp), so ``types`` lists its possible
    parent objects and ``reference`` the child's id field (``OwnerId``) to find children by.
    """

    chain: str
    key: str | None
    types: tuple[str, ...] = ()
    reference: str = ""
    type_keys: tuple[str, ...] = ()  # each type's own stamp field (SystemModstamp), as types


def relationships(
    object_name: str, fields: Iterable[str], describe: Callable[[str], dict[str, Any]]
) -> list[Relationship]:
    """Every hop chain of the mapped relationship paths, resolved against describe."""
    chains = dict.fromkeys(
        ".".join(parts[:n])
        for f in fields
        if "." in f
        for parts in [f.split(".")]
        for n in range(1, len(parts))
    )
    found = []
    for chain in chains:
        current, canonical = object_name, list[str]()
        resolved: Relationship | None = None
        for hop in chain.split("."):
            ref = _named(describe(current)["fields"], "relationshipName", hop)
            if ref is None or not ref.get("referenceTo"):
                break
            targets = tuple(str(t) for t in ref["referenceTo"])
            if len(targets) > 1 or ref.get("polymorphicForeignKey"):
                reference = ".".join([*canonical, str(ref["name"])])
                canonical.append(str(ref["relationshipName"]))
                keyed = []
                for target in targets:
                    try:
                        key, _ = replication_key_for(describe(target)["fields"])
                    except SalesforceClientError:
                        continue  # a type this user cannot see has no rows visible to it either
                    if key is not None:
                        keyed.append((target, key))
                types, keys = tuple(t for t, _ in keyed), tuple(k for _, k in keyed)
                resolved = Relationship(".".join(canonical), None, types, reference, keys)
                break
            canonical.append(str(ref["relationshipName"]))
            current = targets[0]
        else:
            key, _ = replication_key_for(describe(current)["fields"])
            if key is not None:
                resolved = Relationship(".".join(canonical), f"{'.'.join(canonical)}.{key}")
        if resolved is not None:
            found.append(resolved)
    return found


def calculated_fields(
    object_name: str, fields: Iterable[str], describe: Callable[[str], dict[str, Any]]
) -> list[str]:
    """The fields (paths included) that are formulas or roll-ups: ``calculated`` in describe.

    Salesforce computes them when read, and a change of their inputs moves no stamp
    (stitchdata/docs#195, heroku/roadmap#319), so only a periodic full read keeps them fresh.
    """
    calculated = []
    for path in fields:
        try:
            if resolve_field(object_name, path, describe).describe.get("calculated"):
                calculated.append(path)
        except FieldProblem:
            continue
    return calculated
