"""What Amplitude must hold after a run, computed from the org's rows and a mapping (not by the target's code)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from emulators.pipeline import PROJECT_ROOT

DEMO_MAPPING: dict[str, Any] = json.loads((PROJECT_ROOT / "demo" / "mapping.json").read_text())
# Lookup fields behind the relationship names the demo mapping uses.
LOOKUPS = {
    "Owner": ("OwnerId", "User"),
    "Parent": ("ParentId", "Account"),
    "Account__r": ("Account__c", "Account"),
}


def amplitude_value(value: Any) -> Any:
    """How a Salesforce JSON value must arrive in Amplitude (independent of the target's code)."""
    if isinstance(value, str) and len(value) >= 24 and value[10:11] == "T" and value[-5] in "+-":
        parsed = dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(dt.timezone.utc)
        return parsed.strftime("%Y-%m-%dT%H:%M:%S.") + f"{parsed.microsecond // 1000:03d}+00:00"
    if isinstance(value, str):
        return value[:1024]
    return value


def expected_groups(org: Any, mapping: dict[str, Any] = DEMO_MAPPING) -> dict[str, dict[str, dict[str, Any]]]:
    """Every row's group; soft-deleted rows' groups exist with no properties (deleted_records=unset)."""
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for m in mapping["mappings"]:
        for row in org.rows(m["object"], include_deleted=True):
            props: dict[str, Any] = {}
            if row["IsDeleted"]:
                groups.setdefault(m["group_type"], {})[str(row[m["group_name_field"]])] = props
                continue
            for p in m["properties"]:
                node: Any = row
                *hops, last = p["field"].split(".")
                for hop in hops:
                    lookup_field, parent = LOOKUPS[hop]
                    node = org.get(parent, node[lookup_field]) if node and node.get(lookup_field) else None
                value = node.get(last) if node else None
                if value is not None:
                    props[p["property"]] = amplitude_value(value)
            groups.setdefault(m["group_type"], {})[str(row[m["group_name_field"]])] = props
    return groups


def sent_groups(amplitude: Any, since: int) -> set[tuple[str, str]]:
    return {
        (i["group_type"], i["group_value"])
        for r in amplitude.requests[since:]
        if r["status"] == 200
        for i in r["payload"]
    }
