"""From Salesforce describe to Singer stream metadata: field types, relationship paths, bookmarks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from groups_mapping import GroupMapping

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
_ADDRESS_PARTS = (
    "street",
    "city",
    "state",
    "stateCode",
    "postalCode",
    "country",
    "countryCode",
    "geocodeAccuracy",
)
UNSUPPORTED_TYPES = {"base64", "json"}


def json_type(field: dict[str, Any]) -> dict[str, Any] | None:
    """JSON Schema for one describe field (nullable); ``None`` for types that cannot be imported."""
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
    if sf_type == "address":
        parts = {p: {"type": ["string", "null"]} for p in _ADDRESS_PARTS}
        parts |= {"latitude": {"type": ["number", "null"]}, "longitude": {"type": ["number", "null"]}}
        return {"type": ["object", "null"], "properties": parts}
    if sf_type == "location":
        coords = {"latitude": {"type": ["number", "null"]}, "longitude": {"type": ["number", "null"]}}
        return {"type": ["object", "null"], "properties": coords}
    if sf_type == "anyType":
        return {}
    return None


class FieldProblem(Exception):
    """A mapped field that the org does not have (or cannot import)."""


@dataclass(frozen=True)
class ResolvedField:
    """A mapped field (possibly a relationship path) resolved against describe."""

    path: str
    describe: dict[str, Any]
    schema: dict[str, Any]


def resolve_field(object_name: str, path: str, describe: Callable[[str], dict[str, Any]]) -> ResolvedField:
    """Resolve ``Name`` or ``Owner.Manager.Name`` by following relationshipName → referenceTo."""
    current = object_name
    *hops, last = path.split(".")
    for hop in hops:
        fields = describe(current)["fields"]
        ref = next((f for f in fields if (f.get("relationshipName") or "").lower() == hop.lower()), None)
        if ref is None or not ref.get("referenceTo"):
            msg = f"{object_name}: no relationship '{hop}' on {current} (in '{path}')"
            raise FieldProblem(msg)
        # Polymorphic lookups (Owner → User or Group) list several targets; the first is the
        # usual one and shares the standard fields (Name) the mapping can name.
        current = ref["referenceTo"][0]
    field = next((f for f in describe(current)["fields"] if f["name"].lower() == last.lower()), None)
    if field is None:
        where = f"{current} (in '{path}')" if hops else current
        msg = f"{object_name}: no field '{last}' on {where}"
        raise FieldProblem(msg)
    schema = json_type(field)
    if schema is None:
        msg = f"{object_name}: field '{path}' has type '{field.get('type')}', which cannot be imported"
        raise FieldProblem(msg)
    return ResolvedField(path, field, schema)


def replication_key_for(field_names: Iterable[str]) -> str | None:
    """The bookmark field this object offers: SystemModstamp, else LastModifiedDate, else none."""
    names = set(field_names)
    return next((k for k in REPLICATION_KEYS if k in names), None)


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
