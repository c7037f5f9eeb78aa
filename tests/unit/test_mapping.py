"""The mapping format: parsing, every validation rule, and the shipped JSON Schema."""

import json

import jsonschema
import pytest

from groups_mapping import (
    GroupMapping,
    MappingError,
    json_schema_path,
    load_mapping,
    parse_mapping,
    validate,
)


def doc(*mappings):
    return {"version": 1, "mappings": list(mappings)}


def account(**overrides):
    m = {
        "object": "Account",
        "group_type": "org id",
        "group_name_field": "Id",
        "properties": [
            {"field": "Name", "property": "account name"},
            {"field": "CreatedDate", "property": "date"},
            {"field": "Owner.Name", "property": "owner"},
        ],
    }
    m.update(overrides)
    return m


def test_valid_mapping_builds_the_model():
    config = parse_mapping(
        doc(
            account(),
            account(
                object="Subscription__c",
                group_type="sub",
                group_name_field="Name",
                properties=[{"field": "Account__r.Name"}],
            ),
        )
    )
    first, second = config.mappings
    assert first.label == "1: Account -> org id"
    assert first.fields == ("Id", "Name", "CreatedDate", "Owner.Name")
    assert [p.property for p in first.properties] == ["account name", "date", "owner"]
    # a property name defaults to the field name
    assert second.properties[0].property == "Account__r.Name"
    assert config.objects == ("Account", "Subscription__c")
    assert config.to_dict()["mappings"][0] == account()


def test_one_object_feeding_two_group_types_unions_its_fields():
    config = parse_mapping(
        doc(
            account(),
            account(
                group_type="account name",
                group_name_field="Name",
                properties=[{"field": "Industry", "property": "industry"}],
            ),
        )
    )
    assert len(config.for_object("Account")) == 2
    assert config.fields_for("Account") == ("Id", "Name", "CreatedDate", "Owner.Name", "Industry")


def test_property_values_reads_flat_relationship_keys():
    m = parse_mapping(doc(account())).mappings[0]
    record = {"Id": "001", "Name": "Acme", "Owner.Name": "Ann"}
    assert m.group_value(record) == "001"
    assert m.property_values(record) == {"account name": "Acme", "date": None, "owner": "Ann"}


def test_for_stream_maps_every_other_field_to_itself():
    m = GroupMapping.for_stream("users", "id", ["id", "name", "plan"])
    assert (m.group_type, m.group_name_field) == ("users", "id")
    assert [(p.field, p.property) for p in m.properties] == [("name", "name"), ("plan", "plan")]


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (account(object=""), "1: Unknown -> org id: group mapping is missing Salesforce object"),
        (account(group_type=" "), "1: Account -> Unknown: group mapping is missing group type"),
        (
            account(group_name_field=None),
            "1: Account -> org id: group mapping is missing a Salesforce field to represent group id",
        ),
        (account(properties=[]), "1: Account -> org id: group mapping has no group properties"),
        (
            account(properties=[{"field": "Name", "property": ""}]),
            "1: Account -> org id: group property 1: group property name is empty",
        ),
        (
            account(properties=[{"property": "x"}]),
            "1: Account -> org id: group property 1: group property mapping is missing a Salesforce field",
        ),
        (
            account(properties=[{"field": "Name", "property": "$set"}]),
            "1: Account -> org id: group property 1: group property name '$set' must not start with '$' "
            "(reserved for Amplitude operations)",
        ),
        (
            account(properties=[{"field": "Name", "property": "a"}, {"field": "Name", "property": "b"}]),
            "1: Account -> org id: group property 2: Salesforce field 'Name' is already mapped by group "
            "property 1 (each field maps to one group property)",
        ),
        (
            account(properties=[{"field": "Name", "property": "a"}, {"field": "Type", "property": "a"}]),
            "1: Account -> org id: group property 2: group property 'a' is already mapped by group "
            "property 1 (each group property comes from one field)",
        ),
        (
            account(object="Account; DELETE"),
            "1: Account; DELETE -> org id: object 'Account; DELETE' is not a valid Salesforce name",
        ),
        (
            account(properties=[{"field": "Name FROM User--", "property": "x"}]),
            "1: Account -> org id: group property 1: field 'Name FROM User--' is not a valid Salesforce name",
        ),
        (account(propertes=[]), "1: Account -> org id: unknown key 'propertes' (did you mean 'properties'?)"),
    ],
)
def test_each_rule_has_its_message(mapping, message):
    assert validate(doc(mapping)) == [message]


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (account(object=5), "1: Unknown -> org id: 'object' must be a string, not int"),
        (
            account(properties=[{"field": "Name", "property": 5}]),
            "1: Account -> org id: group property 1: 'property' must be a string, not int",
        ),
        (
            account(properties=[{"field": "Name", "property": "a"}, {"field": "NAME", "property": "b"}]),
            "1: Account -> org id: group property 2: Salesforce field 'NAME' is already mapped by group "
            "property 1 (each field maps to one group property)",
        ),
        (
            account(properties=[{"field": "Bad Name"}]),
            "1: Account -> org id: group property 1: field 'Bad Name' is not a valid Salesforce name",
        ),
        (
            account(properties=[{}]),
            "1: Account -> org id: group property 1: group property mapping is missing a Salesforce field",
        ),
    ],
)
def test_types_case_and_defaulted_names(mapping, message):
    assert validate(doc(mapping)) == [message]


def test_version_must_be_the_integer_1():
    assert validate({"version": True, "mappings": [account()]}) == [
        "mapping: unsupported version True (this release reads version 1)"
    ]


def test_objects_compare_case_insensitively_and_lenient_names_refuse_all_controls():
    assert validate(doc(account(), account(object="ACCOUNT", properties=[{"field": "Type"}]))) == [
        "2: ACCOUNT -> org id: Salesforce object 'ACCOUNT' is already mapped to group type 'org id' "
        "by 1: Account -> org id"
    ]
    assert validate(doc(account(object="Acc\x7fount")), strict_names=False) == [
        "1: Acc\x7fount -> org id: object 'Acc\\x7fount' contains control characters"
    ]


def test_cross_mapping_rules():
    same_relation = doc(account(), account(properties=[{"field": "Type", "property": "type"}]))
    assert validate(same_relation) == [
        "2: Account -> org id: Salesforce object 'Account' is already mapped to group type 'org id' "
        "by 1: Account -> org id"
    ]
    overwrite = doc(account(), account(object="Contact", properties=[{"field": "Name", "property": "owner"}]))
    assert validate(overwrite) == [
        "2: Contact -> org id: group property 'owner' of group type 'org id' is also written by "
        "1: Account -> org id; one would overwrite the other"
    ]


def test_project_limits():
    six_types = doc(*[account(group_type=f"t{i}") for i in range(6)])
    assert validate(six_types) == [
        "mappings use 6 group types (t0, t1, t2, t3, t4, t5); an Amplitude project allows at most 5"
    ]
    props = [{"field": f"F{i}__c", "property": f"p{i}"} for i in range(1001)]
    assert validate(doc(account(properties=props))) == [
        "mappings define 1001 distinct group properties; an Amplitude project allows at most 1000"
    ]


def test_names_amplitude_would_refuse_are_refused():
    # Issue 6, point 12: Amplitude refuses strings over 1024 characters as names, so a mapping
    # with such a group type or property name would have every request refused.
    long_type = validate(doc(account(group_type="g" * 1100)))
    assert len(long_type) == 1 and long_type[0].endswith("group type is longer than 1024 characters")
    long_prop = validate(doc(account(properties=[{"field": "Name", "property": "p" * 1025}])))
    assert long_prop == [
        "1: Account -> org id: group property 1: group property name is longer than 1024 characters"
    ]


def test_every_problem_is_reported_at_once():
    problems = validate(
        {"version": 2, "mappings": [account(object=""), account(group_type=""), "x"], "extra": 1}
    )
    assert problems == [
        "mapping: unknown key 'extra'",
        "mapping: unsupported version 2 (this release reads version 1)",
        "1: Unknown -> org id: group mapping is missing Salesforce object",
        "2: Account -> Unknown: group mapping is missing group type",
        "3: Unknown -> Unknown: must be an object",
    ]


def test_lenient_names_for_other_taps():
    other_tap = doc(
        account(
            object="public-users",
            group_name_field="user id",
            properties=[{"field": "plan name", "property": "plan"}],
        )
    )
    assert validate(other_tap)  # not Salesforce names
    assert validate(other_tap, strict_names=False) == []


def test_load_from_file_and_setting(tmp_path):
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps(doc(account())))
    assert load_mapping(mapping_file=str(path)).mappings[0].object == "Account"
    assert load_mapping(json.dumps(doc(account()))).mappings[0].object == "Account"
    path.write_text("{not json")
    with pytest.raises(MappingError, match=r"mapping.json: 1 problem: not valid JSON: .* line 1 column 2"):
        load_mapping(mapping_file=str(path))
    with pytest.raises(MappingError, match="set either 'mapping' or 'mapping_file', not both"):
        load_mapping(doc(account()), str(path))
    with pytest.raises(MappingError, match="cannot read mapping_file"):
        load_mapping(mapping_file=str(tmp_path / "missing.json"))


def test_json_schema_agrees_with_the_model():
    schema = json.loads(json_schema_path().read_text())
    from groups_mapping.validate import MAPPING_KEYS, PROPERTY_KEYS, TOP_KEYS

    assert tuple(schema["properties"]) == TOP_KEYS
    assert tuple(schema["$defs"]["group_mapping"]["properties"]) == MAPPING_KEYS
    assert tuple(schema["$defs"]["property_mapping"]["properties"]) == PROPERTY_KEYS
    valid = doc(account())
    jsonschema.validate(valid, schema)
    for broken in (
        doc(account(object="")),
        doc(account(properties=[])),
        doc(account(typo=1)),
        doc(account(properties=[{"field": "Name", "property": "$x"}])),
        doc(account(object="Account; DELETE")),
    ):
        assert validate(broken), broken
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
