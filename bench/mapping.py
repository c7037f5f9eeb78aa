"""The benchmark's mapping: N importable Account fields picked from the emulator's describe."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

OBJECT = "Account"
GROUP_TYPE = "org id"
GROUP_NAME_FIELD = "Id"

# Preferred first: the default 12 cover a relationship path, a datetime, a date, strings,
# picklists, a currency, an integer and a boolean. More fields come from the describe.
PREFERRED = (
    "Name",
    "Owner.Name",
    "CreatedDate",
    "SLAExpirationDate__c",
    "Industry",
    "Type",
    "AnnualRevenue",
    "NumberOfEmployees",
    "IsActive__c",
    "Rating",
    "BillingCity",
    "BillingCountry",
    "Website",
    "Phone",
    "Health_Score__c",
    "Segment__c",
    "CustomerPriority__c",
    "NumberofLocations__c",
    "Account_Number__c",
    "Parent.Name",
    "Owner.Email",
)
# What the tap cannot import, and what it queries anyway (never mapped here).
NOT_IMPORTABLE = frozenset({"base64", "json", "address", "location"})
RESERVED = frozenset({"Id", "IsDeleted", "SystemModstamp"})

Describe = Callable[[str], dict[str, Any]]


def _fields_by_name(describe: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in describe["fields"]}


def resolve(path: str, describe: Describe, obj: str = OBJECT) -> dict[str, Any] | None:
    """The describe entry of an importable field or relationship path, else None."""
    *hops, last = path.split(".")
    current = obj
    for hop in hops:
        ref = next(
            (f for f in describe(current)["fields"] if f.get("relationshipName") == hop and f["referenceTo"]),
            None,
        )
        if ref is None:
            return None
        current = ref["referenceTo"][0]
    field = _fields_by_name(describe(current)).get(last)
    if field is None or field["type"] in NOT_IMPORTABLE:
        return None
    return field


def pick_fields(count: int, describe: Describe) -> list[tuple[str, str]]:
    """``count`` (field path, property name) pairs: the preferred ones, then the describe's order."""
    candidates = list(PREFERRED) + [
        f["name"] for f in describe(OBJECT)["fields"] if f["name"] not in RESERVED
    ]
    picked: list[tuple[str, str]] = []
    seen_fields: set[str] = set()
    seen_props: set[str] = set()
    for path in candidates:
        if len(picked) == count:
            break
        field = None if path in seen_fields else resolve(path, describe)
        if field is None:
            continue
        prefix = path.rsplit(".", 1)[0].lower() + " " if "." in path else ""
        prop = prefix + str(field["label"]).lower()
        if prop in seen_props:
            prop = path
        picked.append((path, prop))
        seen_fields.add(path)
        seen_props.add(prop)
    if len(picked) < count:
        msg = f"--fields {count}: the emulator's {OBJECT} has only {len(picked)} importable fields"
        raise ValueError(msg)
    return picked


def mapping_document(fields: list[tuple[str, str]]) -> dict[str, Any]:
    """The mapping JSON both plugins read."""
    return {
        "version": 1,
        "mappings": [
            {
                "object": OBJECT,
                "group_type": GROUP_TYPE,
                "group_name_field": GROUP_NAME_FIELD,
                "properties": [{"field": f, "property": p} for f, p in fields],
            }
        ],
    }


def write_mapping(path: Path, fields: list[tuple[str, str]]) -> Path:
    path.write_text(json.dumps(mapping_document(fields), indent=2) + "\n", encoding="utf-8")
    return path
