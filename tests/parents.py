"""What a polymorphic lookup should read for each row: the parent's object and its name."""

from __future__ import annotations

from typing import Any

# The name field of every object a Task (What, Who) or a Case (Owner) can point at: the Name
# object's Name is the parent's name field (a Case's is CaseNumber).
NAME_FIELDS = {
    "Account": "Name",
    "Subscription__c": "Name",
    "Case": "CaseNumber",
    "Contact": "Name",
    "Lead": "Name",
    "Group": "Name",
    "User": "Name",
}


def parent_names(org: Any) -> dict[str, tuple[str, str]]:
    """Id -> (object, name) for every row of those objects in the emulated ``org``."""
    return {
        row["Id"]: (object_name, row[field])
        for object_name, field in NAME_FIELDS.items()
        for row in org.rows(object_name)
    }
