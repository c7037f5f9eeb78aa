"""Field choices for polymorphic lookups: the fields of the Name object, as the tap reads them.

Salesforce documents that a polymorphic relationship (Case.Owner: a User or a Group/queue) is
read in SOQL through the "Name" object and its fields only:
https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_name.htm
https://developer.salesforce.com/docs/platform/salesforce-soql-sosl/guide/sforce-api-calls-soql-relationships-and-polymorph-keys.md
The emulator has no polymorphic lookup, so these describes are built here in describe's shape.
"""

from __future__ import annotations

from typing import Any

from tap_salesforce_groups.editor.org import field_choices
from tests.tap.test_polymorphic import DOCUMENTED_NAME_FIELDS


def field(name: str, label: str, type_: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "label": label, "type": type_, "nillable": True, "unique": False, **extra}


DESCRIBES = {
    "Case": {
        "fields": [
            field("Id", "Case ID", "id", nillable=False),
            field("Subject", "Subject"),
            field(
                "OwnerId",
                "Owner ID",
                "reference",
                referenceTo=["Group", "User"],
                relationshipName="Owner",
                polymorphicForeignKey=True,
            ),
        ]
    },
    "Group": {
        "fields": [
            field("Id", "Group ID", "id"),
            field("Name", "Name"),
            field("Email", "Email", "email"),
            field("Type", "Type", "picklist"),
            field("DoesSendEmailToMembers", "Send Email to Members", "boolean"),
        ]
    },
    "User": {"fields": [field("Id", "User ID", "id"), field("Name", "Full Name"), field("Title", "Title")]},
}


def test_polymorphic_lookup_offers_the_name_object_fields():
    choices = {c["path"]: c for c in field_choices("Case", DESCRIBES.__getitem__)}
    owner = [p for p in choices if p.startswith("Owner.")]
    # The Name object's fields, as its Object Reference page lists them.
    assert owner == [f"Owner.{name}" for name in DOCUMENTED_NAME_FIELDS]
    # Never a field of one target only (a Group's DoesSendEmailToMembers, a User's Department).
    assert "Owner.DoesSendEmailToMembers" not in choices
    assert choices["Owner.Email"]["property"] == "Owner Email"
    assert choices["Owner.Email"]["relationship"] is True
    assert choices["Subject"]["name_warnings"] == [
        "group name field 'Subject' can be empty; rows without a value are skipped",
        "group name field 'Subject' is not unique; rows sharing a value update one group",
    ]


def test_a_simple_lookup_offers_its_targets_fields():
    describes = {
        **DESCRIBES,
        "Case": {
            "fields": [
                field("Id", "Case ID", "id"),
                field("OwnerId", "Owner ID", "reference", referenceTo=["User"], relationshipName="Owner"),
            ]
        },
    }
    choices = [c["path"] for c in field_choices("Case", describes.__getitem__)]
    assert choices == ["Id", "OwnerId", "Owner.Id", "Owner.Name", "Owner.Title"]
