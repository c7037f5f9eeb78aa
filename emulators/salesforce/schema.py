"""The emulated org's schema: its objects, and their describe payloads as Salesforce sends them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

ORG_ID = "00D5g000004EMUlEAO"
API_VERSIONS: tuple[str, ...] = tuple(f"{v}.0" for v in range(31, 67))  # up to Spring '26
SOAP_LOGIN_LAST_VERSION = 64.0  # login() is gone from 65.0 (Salesforce Help 005132110)
LATEST_VERSION = API_VERSIONS[-1]

# Describe `soapType` per field type (what the partner WSDL calls each type).
_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "currency": "xsd:double",
    "double": "xsd:double",
    "percent": "xsd:double",
    "int": "xsd:int",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "address": "urn:address",
    "base64": "xsd:base64Binary",
}

# Types whose values are text in storage and in SOQL comparisons.
TEXT_TYPES = frozenset(
    {"string", "picklist", "multipicklist", "textarea", "url", "phone", "email", "combobox"}
)
NUMBER_TYPES = frozenset({"currency", "double", "percent", "int"})


@dataclass(frozen=True)
class FieldDef:
    """One field of an object, with the describe properties the emulator needs to vary."""

    name: str
    label: str
    type: str
    length: int = 0
    precision: int = 0
    scale: int = 0
    digits: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    custom: bool = False
    formula: str | None = None
    compound: str | None = None
    unique: bool = False
    external_id: bool = False
    id_lookup: bool = False
    filterable: bool = True
    sortable: bool = True
    groupable: bool = True
    reference_to: tuple[str, ...] = ()
    relationship: str | None = None
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    default: Any = None
    name_field: bool = False
    auto_number: bool = False
    defaulted_on_create: bool = False

    @property
    def calculated(self) -> bool:
        return self.formula is not None

    @property
    def stored(self) -> bool:
        """Whether the value lives in a column (compound and formula fields are derived)."""
        return self.type != "address" and self.formula is None

    def describe(self) -> dict[str, Any]:
        """This field as an entry of ``fields[]`` in an sObject describe."""
        text_like = self.type in TEXT_TYPES or self.type in ("id", "reference")
        return {
            "aggregatable": self.type != "base64"
            and (self.type not in ("textarea", "address") or self.length <= 255),
            "aiPredictionField": False,
            "autoNumber": self.auto_number,
            "byteLength": self.length * 3 if text_like else 0,
            "calculated": self.calculated,
            "calculatedFormula": self.formula,
            "cascadeDelete": False,
            "caseSensitive": False,
            "compoundFieldName": self.compound,
            "controllerName": None,
            "createable": self.createable,
            "custom": self.custom,
            "defaultValue": self.default,
            "defaultValueFormula": None,
            "defaultedOnCreate": self.defaulted_on_create,
            "dependentPicklist": False,
            "deprecatedAndHidden": False,
            "digits": self.digits,
            "displayLocationInDecimal": False,
            "encrypted": False,
            "externalId": self.external_id,
            "extraTypeInfo": _extra_type_info(self),
            "filterable": self.filterable,
            "filteredLookupInfo": None,
            "formulaTreatNullNumberAsZero": False,
            "groupable": self.groupable,
            "highScaleNumber": False,
            "htmlFormatted": False,
            "idLookup": self.id_lookup,
            "inlineHelpText": None,
            "label": self.label,
            "length": self.length,
            "mask": None,
            "maskType": None,
            "name": self.name,
            "nameField": self.name_field,
            "namePointing": False,
            "nillable": self.nillable,
            "permissionable": self.nillable and self.createable and self.custom,
            "picklistValues": [
                {
                    "active": True,
                    "defaultValue": False,
                    "label": value,
                    "validFor": None,
                    "value": value,
                }
                for value in self.picklist
            ],
            "polymorphicForeignKey": len(self.reference_to) > 1,
            "precision": self.precision,
            "queryByDistance": False,
            "referenceTargetField": None,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship,
            "relationshipOrder": None,
            "restrictedDelete": False,
            "restrictedPicklist": self.restricted,
            "scale": self.scale,
            "searchPrefilterable": self.type == "reference",
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
            "sortable": self.sortable,
            "type": self.type,
            "unique": self.unique,
            "updateable": self.updateable,
            "writeRequiresMasterRead": False,
        }


def _extra_type_info(f: FieldDef) -> str | None:
    if f.type == "textarea":
        return "plaintextarea"
    if f.type == "url":
        return "url"
    return None


@dataclass(frozen=True)
class ChildRelationship:
    child: str
    field: str
    relationship: str | None


@dataclass
class ObjectDef:
    """An sObject: its name, key prefix and ordered fields (lookup by name is case-insensitive).

    ``queryable=False`` makes a type the API only ever returns (AggregateResult): describe says
    it cannot be queried, retrieved, created, updated or deleted, it has no key prefix, no rows,
    and SOQL ``FROM`` it fails with INVALID_TYPE.
    """

    name: str
    label: str
    label_plural: str
    key_prefix: str | None
    custom: bool
    fields: list[FieldDef]
    children: list[ChildRelationship] = field(default_factory=list)
    queryable: bool = True
    bulk_queryable: bool = True  # False: Bulk API 2.0 refuses it (INVALIDENTITY), REST reads it

    def __post_init__(self) -> None:
        self.by_lower = {f.name.lower(): f for f in self.fields}
        self.relationships = {f.relationship.lower(): f for f in self.fields if f.relationship is not None}
        self.components: dict[str, list[FieldDef]] = {}
        for f in self.fields:
            if f.compound:
                self.components.setdefault(f.compound, []).append(f)

    def field(self, name: str) -> FieldDef | None:
        return self.by_lower.get(name.lower())

    @property
    def has_is_deleted(self) -> bool:
        return "isdeleted" in self.by_lower

    def urls(self, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "compactLayouts": f"{base}/describe/compactLayouts",
            "rowTemplate": f"{base}/{{ID}}",
            "approvalLayouts": f"{base}/describe/approvalLayouts",
            "describe": f"{base}/describe",
            "quickActions": f"{base}/quickActions",
            "layouts": f"{base}/describe/layouts",
            "sobject": base,
        }

    def global_entry(self, version: str) -> dict[str, Any]:
        """This object as an entry of ``sobjects[]`` in the global describe."""
        data = self.queryable  # an object with rows: readable, writable, in the UI
        return {
            "activateable": False,
            "associateEntityType": None,
            "associateParentEntity": None,
            "createable": data,
            "custom": self.custom,
            "customSetting": False,
            "deepCloneable": False,
            "deletable": data,
            "deprecatedAndHidden": False,
            "feedEnabled": data and not self.custom,
            "hasSubtypes": False,
            "isInterface": False,
            "isSubtype": False,
            "keyPrefix": self.key_prefix,
            "label": self.label,
            "labelPlural": self.label_plural,
            "layoutable": data,
            "mergeable": self.name == "Account",
            "mruEnabled": data,
            "name": self.name,
            "queryable": data,
            "replicateable": data,
            "retrieveable": data,
            "searchable": data,
            "triggerable": data,
            "undeletable": self.has_is_deleted,
            "updateable": data,
            "urls": {
                k: v for k, v in self.urls(version).items() if k in ("sobject", "describe", "rowTemplate")
            },
        }

    def describe(self, version: str) -> dict[str, Any]:
        """The ``sobjects/{Name}/describe`` payload."""
        body = self.global_entry(version)
        body.update(
            {
                "actionOverrides": [],
                "childRelationships": [
                    {
                        "cascadeDelete": False,
                        "childSObject": c.child,
                        "deprecatedAndHidden": False,
                        "field": c.field,
                        "junctionIdListNames": [],
                        "junctionReferenceTo": [],
                        "relationshipName": c.relationship,
                        "restrictedDelete": False,
                    }
                    for c in self.children
                ],
                "compactLayoutable": self.queryable,
                "defaultImplementation": None,
                "extendedBy": None,
                "extendsInterfaces": None,
                "fields": [f.describe() for f in self.fields],
                "implementedBy": None,
                "implementsInterfaces": None,
                "listviewable": None,
                "lookupLayoutable": None,
                "namedLayoutInfos": [],
                "networkScopeFieldName": None,
                "recordTypeInfos": [
                    {
                        "active": True,
                        "available": True,
                        "defaultRecordTypeMapping": True,
                        "developerName": "Master",
                        "master": True,
                        "name": "Master",
                        "recordTypeId": "012000000000000AAA",
                        "urls": {
                            "layout": f"/services/data/v{version}/sobjects/{self.name}"
                            "/describe/layouts/012000000000000AAA"
                        },
                    }
                ]
                if self.queryable
                else [],
                "searchLayoutable": self.queryable,
                "sobjectDescribeOptions": {},
                "supportedScopes": [
                    {"label": "All " + self.label_plural.lower(), "name": "everything"},
                    {"label": "My " + self.label_plural.lower(), "name": "mine"},
                ]
                if self.queryable
                else [],
                "urls": self.urls(version),
            }
        )
        return body


# -- field factories: the describe defaults Salesforce uses for each kind of field ------------
def _id() -> FieldDef:
    return FieldDef(
        "Id",
        "Record ID",
        "id",
        length=18,
        nillable=False,
        createable=False,
        updateable=False,
        id_lookup=True,
        defaulted_on_create=True,
    )


def _is_deleted() -> FieldDef:
    return FieldDef(
        "IsDeleted",
        "Deleted",
        "boolean",
        nillable=False,
        createable=False,
        updateable=False,
        default=False,
        defaulted_on_create=True,
    )


def _audit(name: str, label: str) -> FieldDef:
    return FieldDef(
        name,
        label,
        "datetime",
        nillable=False,
        createable=False,
        updateable=False,
        defaulted_on_create=True,
    )


def _audit_fields() -> tuple[FieldDef, ...]:
    """CreatedDate, LastModifiedDate and SystemModstamp, which every object here has."""
    return (
        _audit("CreatedDate", "Created Date"),
        _audit("LastModifiedDate", "Last Modified Date"),
        _audit("SystemModstamp", "System Modstamp"),
    )


def _owner(*, queue_owned: bool = False) -> FieldDef:
    """OwnerId; on queue-owned objects (Case, Lead, custom objects with queues) a Group or a User.

    Describe lists ``["Group", "User"]`` for those, as Case.OwnerId does in a real org; which
    object a row's owner is follows from the id's key prefix (00G a queue, 005 a user).
    """
    return FieldDef(
        "OwnerId",
        "Owner ID",
        "reference",
        length=18,
        nillable=False,
        reference_to=("Group", "User") if queue_owned else ("User",),
        relationship="Owner",
        defaulted_on_create=True,
    )


def _text(name: str, label: str, length: int, **kw: Any) -> FieldDef:
    return FieldDef(name, label, "string", length=length, **kw)


def _picklist(name: str, label: str, values: tuple[str, ...], **kw: Any) -> FieldDef:
    return FieldDef(name, label, "picklist", length=255, picklist=values, **kw)


def _number(name: str, label: str, type_: str, precision: int, scale: int, **kw: Any) -> FieldDef:
    return FieldDef(name, label, type_, precision=precision, scale=scale, **kw)


ACCOUNT_TYPES = (
    "Prospect",
    "Customer - Direct",
    "Customer - Channel",
    "Channel Partner / Reseller",
    "Installation Partner",
    "Technology Partner",
    "Other",
)
INDUSTRIES = (
    "Agriculture",
    "Apparel",
    "Banking",
    "Biotechnology",
    "Chemicals",
    "Communications",
    "Construction",
    "Consulting",
    "Education",
    "Electronics",
    "Energy",
    "Engineering",
    "Entertainment",
    "Environmental",
    "Finance",
    "Food & Beverage",
    "Government",
    "Healthcare",
    "Hospitality",
    "Insurance",
    "Machinery",
    "Manufacturing",
    "Media",
    "Not For Profit",
    "Recreation",
    "Retail",
    "Shipping",
    "Technology",
    "Telecommunications",
    "Transportation",
    "Utilities",
    "Other",
)
RATINGS = ("Hot", "Warm", "Cold")
GEOCODE_ACCURACIES = (
    "Address",
    "NearAddress",
    "Block",
    "Street",
    "ExtendedZip",
    "Zip",
    "Neighborhood",
    "City",
    "County",
    "State",
    "Unknown",
)
PRIORITIES = ("High", "Low", "Medium")
SEGMENTS = ("SMB", "Mid-Market", "Enterprise", "Strategic", "Public Sector", "EMEA", "APAC", "AMER")
PLANS = ("Starter", "Growth", "Business", "Enterprise")
STATUSES = ("Trial", "Active", "Past Due", "Cancelled")
CASE_STATUSES = ("New", "Working", "Escalated", "Closed")
# Group.Type values (a queue is a Group of type "Queue"):
# https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_group.htm
GROUP_TYPES = ("Regular", "Role", "RoleAndSubordinates", "Organization", "Queue")
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
LEAD_STATUSES = (
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
)


def _billing(suffix: str, label: str, type_: str, **kw: Any) -> FieldDef:
    return FieldDef(f"Billing{suffix}", f"Billing {label}", type_, compound="BillingAddress", **kw)


ACCOUNT = ObjectDef(
    "Account",
    "Account",
    "Accounts",
    "001",
    custom=False,
    fields=[
        _id(),
        _is_deleted(),
        _text("Name", "Account Name", 255, nillable=False, id_lookup=True, name_field=True),
        _picklist("Type", "Account Type", ACCOUNT_TYPES),
        _picklist("Industry", "Industry", INDUSTRIES),
        _number("AnnualRevenue", "Annual Revenue", "currency", 18, 0),
        FieldDef("NumberOfEmployees", "Employees", "int", digits=8),
        _picklist("Rating", "Account Rating", RATINGS),
        FieldDef("Website", "Website", "url", length=255),
        FieldDef("Phone", "Account Phone", "phone", length=40),
        FieldDef(
            "Description",
            "Account Description",
            "textarea",
            length=32000,
            filterable=False,
            sortable=False,
            groupable=False,
        ),
        FieldDef(
            "BillingAddress",
            "Billing Address",
            "address",
            createable=False,
            updateable=False,
            filterable=False,
            sortable=False,
            groupable=False,
        ),
        _billing("Street", "Street", "textarea", length=255),
        _billing("City", "City", "string", length=40),
        _billing("State", "State/Province", "string", length=80),
        _billing("PostalCode", "Zip/Postal Code", "string", length=20),
        _billing("Country", "Country", "string", length=80),
        _billing("Latitude", "Latitude", "double", precision=18, scale=15),
        _billing("Longitude", "Longitude", "double", precision=18, scale=15),
        _billing(
            "GeocodeAccuracy",
            "Geocode Accuracy",
            "picklist",
            length=40,
            picklist=GEOCODE_ACCURACIES,
            restricted=True,
        ),
        _owner(),
        FieldDef(
            "ParentId",
            "Parent Account ID",
            "reference",
            length=18,
            reference_to=("Account",),
            relationship="Parent",
        ),
        *_audit_fields(),
        FieldDef("LastActivityDate", "Last Activity", "date", createable=False, updateable=False),
        _picklist("CustomerPriority__c", "Customer Priority", PRIORITIES, custom=True),
        FieldDef("SLAExpirationDate__c", "SLA Expiration Date", "date", custom=True),
        _number("NumberofLocations__c", "Number of Locations", "double", 3, 0, custom=True),
        FieldDef(
            "IsActive__c",
            "Active",
            "boolean",
            nillable=False,
            custom=True,
            default=False,
            defaulted_on_create=True,
        ),
        _number("Health_Score__c", "Health Score", "percent", 5, 2, custom=True),
        FieldDef("Segment__c", "Segment", "multipicklist", length=4099, picklist=SEGMENTS, custom=True),
        _text(
            "Account_Number__c",
            "Account Number",
            40,
            nillable=False,
            custom=True,
            unique=True,
            external_id=True,
            id_lookup=True,
        ),
    ],
    children=[
        ChildRelationship("Account", "ParentId", "ChildAccounts"),
        ChildRelationship("Subscription__c", "Account__c", "Subscriptions__r"),
    ],
)

USER = ObjectDef(
    "User",
    "User",
    "Users",
    "005",
    custom=False,
    fields=[
        _id(),
        _text(
            "Name",
            "Full Name",
            121,
            nillable=False,
            createable=False,
            updateable=False,
            name_field=True,
        ),
        _text("FirstName", "First Name", 40),
        _text("LastName", "Last Name", 80, nillable=False),
        FieldDef("Email", "Email", "email", length=128, nillable=False),
        _text("Username", "Username", 80, nillable=False, unique=True, id_lookup=True),
        FieldDef("IsActive", "Active", "boolean", nillable=False, default=True, defaulted_on_create=True),
        _text("Title", "Title", 80),
        _text("Department", "Department", 80),
        *_audit_fields(),
    ],
    children=[
        ChildRelationship("Account", "OwnerId", None),
        ChildRelationship("Subscription__c", "OwnerId", None),
    ],
)

# Group: public groups and queues. A queue (Type "Queue") can own Cases, Leads and custom
# objects, which is why their OwnerId is polymorphic. Like User, no IsDeleted (not undeletable).
# https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_group.htm
GROUP = ObjectDef(
    "Group",
    "Group",
    "Groups",
    "00G",
    custom=False,
    fields=[
        _id(),
        _text("Name", "Name", 40, nillable=False, name_field=True),
        _text("DeveloperName", "Developer Name", 80, nillable=False),
        _picklist("Type", "Type", GROUP_TYPES, nillable=False, restricted=True),
        FieldDef("Email", "Email", "email", length=255),
        *_audit_fields(),
    ],
    children=[ChildRelationship("Case", "OwnerId", None)],
)

SUBSCRIPTION = ObjectDef(
    "Subscription__c",
    "Subscription",
    "Subscriptions",
    "a0B",
    custom=True,
    fields=[
        _id(),
        _is_deleted(),
        _text(
            "Name",
            "Subscription Number",
            80,
            nillable=False,
            createable=False,
            updateable=False,
            id_lookup=True,
            name_field=True,
            auto_number=True,
            defaulted_on_create=True,
        ),
        FieldDef(
            "Account__c",
            "Account",
            "reference",
            length=18,
            custom=True,
            reference_to=("Account",),
            relationship="Account__r",
        ),
        _picklist("Plan__c", "Plan", PLANS, custom=True, restricted=True),
        _number("MRR__c", "MRR", "currency", 16, 2, custom=True),
        _number("Seats__c", "Seats", "double", 8, 0, custom=True),
        _picklist("Status__c", "Status", STATUSES, custom=True, restricted=True),
        FieldDef("Renewal_Date__c", "Renewal Date", "date", custom=True),
        _number(
            "ARR__c",
            "ARR",
            "currency",
            18,
            2,
            custom=True,
            createable=False,
            updateable=False,
            formula="MRR__c * 12",
        ),
        # A cross-object formula: its value follows the parent account, and changing the
        # account moves no stamp on the subscription.
        FieldDef(
            "Account_Rating__c",
            "Account Rating",
            "string",
            length=1300,
            custom=True,
            createable=False,
            updateable=False,
            formula="TEXT(Account__r.Rating)",
        ),
        _owner(queue_owned=True),
        *_audit_fields(),
    ],
)

DOCUMENT = ObjectDef(
    "Document",
    "Document",
    "Documents",
    "015",
    custom=False,
    fields=[
        _id(),
        _is_deleted(),
        _text("Name", "Document Name", 255, nillable=False, name_field=True),
        _text("DeveloperName", "Document Unique Name", 80, unique=True),
        _text("Type", "File Extension", 40),
        _text("ContentType", "MIME Type", 120),
        FieldDef("BodyLength", "Body Length", "int", digits=9, createable=False, updateable=False),
        # Binary content: queries return the URL of the blob (…/sobjects/Document/{Id}/Body),
        # never the data, and Bulk queries that select it fail.
        FieldDef("Body", "Body", "base64", filterable=False, sortable=False, groupable=False),
        FieldDef("Description", "Description", "textarea", length=255),
        *_audit_fields(),
    ],
)

# Case: the standard object whose Owner is polymorphic (a queue or a user), as in every org.
CASE = ObjectDef(
    "Case",
    "Case",
    "Cases",
    "500",
    custom=False,
    fields=[
        _id(),
        _is_deleted(),
        _text(
            "CaseNumber",
            "Case Number",
            30,
            nillable=False,
            createable=False,
            updateable=False,
            name_field=True,
            auto_number=True,
            defaulted_on_create=True,
        ),
        _text("Subject", "Subject", 255),
        _picklist("Status", "Status", CASE_STATUSES),
        _owner(queue_owned=True),
        *_audit_fields(),
    ],
)


def _person_name(label: str) -> FieldDef:
    """Name of a Contact or Lead: read-only, FirstName and LastName joined."""
    return _text("Name", label, 121, nillable=False, createable=False, updateable=False, name_field=True)


# Contact and Lead: the targets of Task.WhoId, kept minimal (names, email, a parent).
CONTACT = ObjectDef(
    "Contact",
    "Contact",
    "Contacts",
    "003",
    custom=False,
    fields=[
        _id(),
        _is_deleted(),
        FieldDef(
            "AccountId",
            "Account ID",
            "reference",
            length=18,
            reference_to=("Account",),
            relationship="Account",
        ),
        _text("FirstName", "First Name", 40),
        _text("LastName", "Last Name", 80, nillable=False),
        _person_name("Full Name"),
        FieldDef("Email", "Email", "email", length=80),
        _text("Title", "Title", 128),
        _owner(),
        *_audit_fields(),
    ],
)

LEAD = ObjectDef(
    "Lead",
    "Lead",
    "Leads",
    "00Q",
    custom=False,
    fields=[
        _id(),
        _is_deleted(),
        _text("FirstName", "First Name", 40),
        _text("LastName", "Last Name", 80, nillable=False),
        _person_name("Full Name"),
        _text("Company", "Company", 255, nillable=False),
        FieldDef("Email", "Email", "email", length=80),
        _picklist("Status", "Status", LEAD_STATUSES, nillable=False),
        _owner(queue_owned=True),
        *_audit_fields(),
    ],
)

# Task: WhoId (a person: Contact or Lead, relationship "Who") and WhatId (any object with
# activities, relationship "What") are polymorphic. Real orgs list more What targets (Asset,
# Campaign, Opportunity, …); these are the ones this org has.
# https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_task.htm
TASK = ObjectDef(
    "Task",
    "Task",
    "Tasks",
    "00T",
    custom=False,
    fields=[
        _id(),
        _is_deleted(),
        FieldDef("Subject", "Subject", "combobox", length=255),
        _picklist("Status", "Status", TASK_STATUSES, nillable=False),
        FieldDef(
            "WhoId",
            "Name ID",
            "reference",
            length=18,
            reference_to=("Contact", "Lead"),
            relationship="Who",
        ),
        FieldDef(
            "WhatId",
            "Related To ID",
            "reference",
            length=18,
            reference_to=("Account", "Case", "Subscription__c"),
            relationship="What",
        ),
        FieldDef("ActivityDate", "Due Date Only", "date"),
        _owner(),
        *_audit_fields(),
    ],
)

# A history object: REST reads it, Bulk API 2.0 does not ("*History" objects are not supported by
# the Bulk API: airbyte's UNSUPPORTED_BULK_API_SALESFORCE_OBJECTS; data-integrations/salesforce
# docs list "*History (e.g. AccountHistory, ActivityHistory, ...)"), and its SystemModstamp is
# not filterable: `WHERE SystemModstamp >= …` fails with INVALID_FIELD "field 'SystemModstamp'
# can not be filtered in a query call" (airbytehq/airbyte#62877 and PR #68166, a real org's
# describe of ActivityFieldHistory). History objects have no LastModifiedDate.
ACTIVITY_FIELD_HISTORY = ObjectDef(
    "ActivityFieldHistory",
    "Activity Field History",
    "Activity Field History",
    "017",
    custom=False,
    fields=[
        _id(),
        FieldDef(
            "ActivityId", "Activity ID", "reference", length=18, reference_to=("Task",), createable=False
        ),
        FieldDef(
            "ChangedById", "Changed By ID", "reference", length=18, reference_to=("User",), createable=False
        ),
        FieldDef("ChangedDate", "Changed Date", "datetime", createable=False, updateable=False),
        _text("FieldName", "Field Name", 255, createable=False, updateable=False),
        _text("DataType", "Data Type", 40, createable=False, updateable=False),
        _text("Operation", "Operation", 40, createable=False, updateable=False),
        _text("OldValueText", "Old Value (Text)", 255, createable=False, updateable=False),
        _text("NewValueText", "New Value (Text)", 255, createable=False, updateable=False),
        _audit("CreatedDate", "Created Date"),
        replace(_audit("SystemModstamp", "System Modstamp"), filterable=False),
    ],
    bulk_queryable=False,
)

# A custom object as wide as an org allows (800 custom fields), for mappings whose field list
# does not fit in a REST query URI.
WIDE_FIELDS = 800
WIDE = ObjectDef(
    "Wide__c",
    "Wide",
    "Wides",
    "a0W",
    custom=True,
    fields=[
        _id(),
        _is_deleted(),
        _text("Name", "Wide Name", 80, nillable=False, name_field=True),
        *(
            _text(f"Custom_Attribute_{k:03d}__c", f"Attribute {k}", 80, custom=True)
            for k in range(1, WIDE_FIELDS + 1)
        ),
        *_audit_fields(),
    ],
)

# A type the API only returns (the rows of aggregate SOQL queries): listed by the global
# describe with queryable false, describable, but never a FROM target.
AGGREGATE_RESULT = ObjectDef(
    "AggregateResult",
    "AggregateResult",
    "AggregateResult",
    None,
    custom=False,
    fields=[_id()],
    queryable=False,
)

OBJECTS: dict[str, ObjectDef] = {
    o.name: o
    for o in (
        ACCOUNT,
        USER,
        SUBSCRIPTION,
        DOCUMENT,
        CASE,
        WIDE,
        GROUP,
        CONTACT,
        LEAD,
        TASK,
        ACTIVITY_FIELD_HISTORY,
        AGGREGATE_RESULT,
    )
}
OBJECTS_LOWER: dict[str, ObjectDef] = {k.lower(): v for k, v in OBJECTS.items()}


# SOQL reads a polymorphic relationship (Owner, Who, What) through the Name object, whatever
# the row's actual object: only these fields, no relationships of its own. Not in OBJECTS: it
# "cannot be directly accessed" (no FROM Name).
# https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_relationships_and_polymorph_keys.htm
# https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_name.htm
NAME_OBJECT = ObjectDef(
    "Name",
    "Name",
    "Names",
    None,
    custom=False,
    fields=[
        _id(),
        _text("Name", "Name", 255, createable=False, updateable=False, name_field=True),
        _text("Alias", "Alias", 8, createable=False, updateable=False),
        FieldDef("Email", "Email", "email", length=128, createable=False, updateable=False),
        _text("FirstName", "First Name", 40, createable=False, updateable=False),
        _text("LastName", "Last Name", 80, createable=False, updateable=False),
        FieldDef("IsActive", "Active", "boolean", createable=False, updateable=False),
        FieldDef("Phone", "Phone", "phone", length=40, createable=False, updateable=False),
        _text("Title", "Title", 80, createable=False, updateable=False),
        _picklist("Type", "Type", (), createable=False, updateable=False, restricted=True),
        FieldDef("UserRoleId", "Role ID", "reference", length=18, createable=False, updateable=False),
        FieldDef("ProfileId", "Profile ID", "reference", length=18, createable=False, updateable=False),
        FieldDef(
            "LastReferencedDate", "Last Referenced Date", "datetime", createable=False, updateable=False
        ),
        FieldDef("LastViewedDate", "Last Viewed Date", "datetime", createable=False, updateable=False),
        _text("MiddleName", "Middle Name", 40, createable=False, updateable=False),
        _text("NameOrAlias", "Name or Alias", 255, createable=False, updateable=False),
        FieldDef(
            "RecordTypeId", "Record Type ID", "reference", length=18, createable=False, updateable=False
        ),
        _text("Username", "Username", 80, createable=False, updateable=False),
    ],
    queryable=False,
)
NAME_OBJECT_FIELDS = frozenset(NAME_OBJECT.by_lower)


def is_polymorphic(f: FieldDef) -> bool:
    """Whether a reference field may point at more than one object (describe's polymorphicForeignKey)."""
    return len(f.reference_to) > 1


def find_object(name: str) -> ObjectDef | None:
    """The object named ``name``, case-insensitively (as SOQL and the REST paths resolve it)."""
    return OBJECTS_LOWER.get(name.lower())
