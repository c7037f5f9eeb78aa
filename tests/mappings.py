"""Mapping documents the tests share, built from (field, property) pairs."""

from __future__ import annotations

from typing import Any

# Account fields of several types: text, currency, boolean, datetime, date and a relationship path.
ACCOUNT_PROPERTIES = (
    ("Name", "account name"),
    ("AnnualRevenue", "revenue"),
    ("IsActive__c", "active"),
    ("CreatedDate", "date"),
    ("SLAExpirationDate__c", "sla"),
    ("Owner.Name", "owner"),
)


# Account fields as the shard and convergence tests name them (what the other properties join).
ACCOUNT_BASICS = (("Name", "account name"), ("Industry", "industry"), ("AnnualRevenue", "annual revenue"))


def group(
    object_name: str, group_type: str, name_field: str, pairs: tuple[tuple[str, str], ...]
) -> dict[str, Any]:
    """One group mapping in the file format."""
    return {
        "object": object_name,
        "group_type": group_type,
        "group_name_field": name_field,
        "properties": [{"field": f, "property": p} for f, p in pairs],
    }


def document(*groups: dict[str, Any]) -> dict[str, Any]:
    """A whole mapping file."""
    return {"version": 1, "mappings": list(groups)}
