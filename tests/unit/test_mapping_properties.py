"""Property-based tests of the mapping validator (hypothesis).

A strategy builds valid mapping documents. For each validation rule a mutation takes such a
document and applies exactly one violation of that rule; the test then expects exactly that
rule's message. Messages are built here from the documented wording (docs/mapping.md, "Validation"),
never taken from the validator's output, and labels follow ``N: Object -> group type`` with
``Unknown`` for a missing part.

The model of the format this file assumes (and checks): object, group type, group name field,
field and property values are trimmed; a property without ``property`` is named after its field;
property names are unique within a group type across mappings.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from groups_mapping import json_schema_path, parse_mapping, validate

SCHEMA = json.loads(json_schema_path().read_text())
jsonschema.Draft202012Validator.check_schema(SCHEMA)
SCHEMA_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

# The documented keys at each level (README / docs/SPEC.md §3), written out rather than imported.
TOP_KEYS = ("version", "mappings")
MAPPING_KEYS = ("object", "group_type", "group_name_field", "properties")
PROPERTY_KEYS = ("field", "property")

# What this file takes a Salesforce name to be: a letter, then letters, digits and underscores;
# a field may be a relationship path of at most 5 hops (SOQL's limit).
SF_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
SF_PATH = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*){0,5}")

FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- names ---------------------------------------------------------------------------------

SEGMENT = st.builds(
    str.__add__,
    st.sampled_from(string.ascii_letters),
    st.text(alphabet=string.ascii_letters + string.digits + "_", max_size=12),
)
CUSTOM = SEGMENT.map(lambda s: f"{s}__c")
OBJECTS = st.one_of(
    st.sampled_from(["Account", "Contact", "Opportunity", "Lead", "Case", "User", "Subscription__c"]),
    SEGMENT,
    CUSTOM,
)
RELATIONSHIPS = st.one_of(
    st.sampled_from(["Owner", "Parent", "Account", "CreatedBy", "Manager", "Account__r"]),
    SEGMENT.map(lambda s: f"{s}__r"),
)
LEAVES = st.one_of(
    st.sampled_from(["Id", "Name", "CreatedDate", "Industry", "AnnualRevenue", "Plan__c"]),
    SEGMENT,
    CUSTOM,
)
# 0 to 5 relationship hops (SOQL's limit): Name, Owner.Name, Account__r.Owner.Name, ...
HOPS: st.SearchStrategy[list[str]] = st.one_of(
    st.just([]),
    st.lists(RELATIONSHIPS, min_size=1, max_size=2),
    st.lists(RELATIONSHIPS, min_size=3, max_size=5),
)
FIELDS = st.builds(lambda hops, leaf: ".".join([*hops, leaf]), HOPS, LEAVES)

# Free text names (group types, property names): trimmed, non-empty, any unicode; a small pool
# of common names makes the same property name turn up under several group types.
TEXT = st.text(min_size=1, max_size=16).map(str.strip).filter(bool)
GROUP_TYPES = st.one_of(st.sampled_from(["org id", "account", "Konto", "組織", "team"]), TEXT)
PROPERTY_NAMES = st.one_of(
    st.sampled_from(["account name", "date", "owner", "Name", "Größe", "売上 2024", "industry"]),
    TEXT,
).filter(lambda s: not s.startswith("$"))
# Whitespace that trimming removes (the schema's \s matches it too).
PADDING = st.sampled_from(["", "", " ", "  ", "\t", "\n ", "\u00a0", "\u3000"])
BLANK = st.text(alphabet=" \t\n\r\u00a0\u2003\u3000", max_size=4)


def no_control(s: str) -> bool:
    return all(unicodedata.category(c) != "Cc" for c in s)


def trimmed(s: str) -> bool:
    return bool(s) and s == s.strip()


BAD_CHARS = st.sampled_from(
    [
        *" -;'\"()*,/$#@!%&=+?<>[]{}|\\`~\u00a0",
        "\u00e4",
        "\u00e9",
        "\u00df",
        "\u00c5",
        "\u0131",
        "\u65e5",
        "\u2014",
    ]
)


@st.composite
def _with_bad_char(draw: st.DrawFn, names: st.SearchStrategy[str]) -> str:
    name = draw(names)
    at = draw(st.integers(0, len(name)))
    return name[:at] + draw(BAD_CHARS) + name[at:]


def _bad_names(good: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Names that are not Salesforce names: no control characters, already trimmed."""
    return st.one_of(
        _with_bad_char(good),
        st.builds(lambda c, s: c + s, st.sampled_from(list("0123456789_")), SEGMENT),
        st.builds(lambda a, b: f"{a}..{b}", SEGMENT, SEGMENT),
        st.builds(lambda a: f"{a}.", SEGMENT),
        st.builds(lambda a: f".{a}", SEGMENT),
        st.lists(SEGMENT, min_size=7, max_size=9).map(".".join),  # 6+ hops
        st.sampled_from(
            ["Name FROM User--", "Id, Name", "Name) OR (Id != null", "Çompte", "Nāme", "Account; DELETE"]
        ),
        st.text(min_size=1, max_size=12),
    ).filter(lambda s: trimmed(s) and no_control(s))


BAD_OBJECTS = st.one_of(_bad_names(OBJECTS), FIELDS.filter(lambda f: "." in f)).filter(
    lambda s: not SF_NAME.fullmatch(s)
)
BAD_FIELDS = _bad_names(FIELDS).filter(lambda s: not SF_PATH.fullmatch(s))


@st.composite
def _control_names(draw: st.DrawFn) -> str:
    """Trimmed names with a control character (below 32) inside."""
    ends = st.text(alphabet=string.ascii_letters + " .-", min_size=1, max_size=6).filter(trimmed)
    return draw(ends) + draw(st.sampled_from([chr(c) for c in range(32)])) + draw(ends)


CONTROL_NAMES = _control_names()


# -- valid documents -----------------------------------------------------------------------


def _fresh(taken: set[str], base: str) -> str:
    n = 1
    while f"{base} {n}" in taken:
        n += 1
    taken.add(f"{base} {n}")
    return f"{base} {n}"


def _fresh_field(taken_lower: set[str], base: str = "Fresh") -> str:
    n = 1
    while f"{base}{n}__c".lower() in taken_lower:
        n += 1
    taken_lower.add(f"{base}{n}__c".lower())
    return f"{base}{n}__c"


@st.composite
def valid_documents(draw: st.DrawFn, max_mappings: int = 5) -> dict[str, Any]:
    group_types = draw(st.lists(GROUP_TYPES, min_size=1, max_size=5, unique=True))
    relations: set[tuple[str, str]] = set()
    written: dict[str, set[str]] = {}
    mappings = []
    for _ in range(draw(st.integers(1, max_mappings))):
        group_type = draw(st.sampled_from(group_types))
        obj = draw(OBJECTS)
        if (obj.lower(), group_type) in relations:
            continue
        relations.add((obj.lower(), group_type))
        taken = written.setdefault(group_type, set())
        properties = []
        for field in draw(st.lists(FIELDS, min_size=1, max_size=5, unique_by=str.lower)):
            name = draw(st.none() | PROPERTY_NAMES)  # None: omitted, named after the field
            if (field if name is None else name) in taken:
                name = _fresh(taken, "property")
            taken.add(field if name is None else name)
            item = {"field": field}
            if name is not None:
                item["property"] = draw(PADDING) + name + draw(PADDING)
            properties.append(item)
        mappings.append(
            {
                "object": obj,
                "group_type": draw(PADDING) + group_type + draw(PADDING),
                "group_name_field": draw(FIELDS),
                "properties": properties,
            }
        )
    doc: dict[str, Any] = {"mappings": mappings}
    if draw(st.booleans()):
        doc = {"version": 1, **doc}
    return doc


def normalised(doc: dict[str, Any]) -> dict[str, Any]:
    """What the normalised export of a valid document must be (this file's model of it)."""
    return {
        "version": 1,
        "mappings": [
            {
                "object": m["object"].strip(),
                "group_type": m["group_type"].strip(),
                "group_name_field": m["group_name_field"].strip(),
                "properties": [
                    {"field": p["field"].strip(), "property": prop_name(p)} for p in m["properties"]
                ],
            }
            for m in doc["mappings"]
        ],
    }


def prop_name(item: dict[str, Any]) -> str:
    return item.get("property", item["field"]).strip()


def label(doc: dict[str, Any], i: int) -> str:
    m = doc["mappings"][i - 1]
    return f"{i}: {m['object'].strip()} -> {m['group_type'].strip()}"


def all_strings(value: Any) -> set[str]:
    """Every string in a document, trimmed: fresh names avoid them all."""
    if isinstance(value, str):
        return {value.strip()}
    if isinstance(value, dict):
        return set().union(*(all_strings(v) for v in value.values()), {str(k) for k in value})
    if isinstance(value, list):
        return set().union(*(all_strings(v) for v in value))
    return set()


def lower_fields(m: dict[str, Any]) -> set[str]:
    return {p["field"].lower() for p in m["properties"] if isinstance(p.get("field"), str)} | {
        m["group_name_field"].lower()
    }


@FAST
@given(valid_documents())
def test_valid_documents_parse_validate_and_round_trip(doc):
    before = json.dumps(doc)
    config = parse_mapping(doc)
    assert json.dumps(doc) == before  # the input is not modified
    assert validate(doc) == []
    assert validate(doc, strict_names=False) == []
    exported = config.to_dict()
    assert exported == normalised(doc)
    assert parse_mapping(exported) == config
    assert parse_mapping(json.loads(json.dumps(exported))) == config
    assert [m.label for m in config.mappings] == [label(doc, i) for i in range(1, len(doc["mappings"]) + 1)]
    SCHEMA_VALIDATOR.validate(doc)
    SCHEMA_VALIDATOR.validate(exported)


# -- one violation per rule ----------------------------------------------------------------
# A local rule mutates mapping i (1-based) of a valid document in place and returns the one
# message it expects; it touches nothing else, so any set of them on distinct mappings gives
# the union of their messages. A mapping with a problem takes no part in cross-mapping rules.

DELETE = object()
MISSING = st.one_of(st.just(DELETE), st.none(), BLANK)


def _remove(data: st.DataObject, where: dict[str, Any], key: str) -> None:
    value = data.draw(MISSING, label=f"missing {key}")
    if value is DELETE:
        del where[key]
    else:
        where[key] = value


def _pick_property(data: st.DataObject, m: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    j = data.draw(st.integers(1, len(m["properties"])), label="property")
    return j, m["properties"][j - 1]


def missing_object(data, doc, i):
    m = doc["mappings"][i - 1]
    group_type = m["group_type"].strip()
    _remove(data, m, "object")
    return f"{i}: Unknown -> {group_type}: group mapping is missing Salesforce object"


def missing_group_type(data, doc, i):
    m = doc["mappings"][i - 1]
    obj = m["object"].strip()
    _remove(data, m, "group_type")
    return f"{i}: {obj} -> Unknown: group mapping is missing group type"


def missing_group_name_field(data, doc, i):
    where = label(doc, i)
    _remove(data, doc["mappings"][i - 1], "group_name_field")
    return f"{where}: group mapping is missing a Salesforce field to represent group id"


def no_properties(data, doc, i):
    where = label(doc, i)
    m = doc["mappings"][i - 1]
    how = data.draw(st.sampled_from(["empty", "null", "delete"]), label="no properties")
    if how == "delete":
        del m["properties"]
    else:
        m["properties"] = [] if how == "empty" else None
    return f"{where}: group mapping has no group properties"


def property_without_field(data, doc, i):
    where = label(doc, i)
    j, item = _pick_property(data, doc["mappings"][i - 1])
    item["property"] = prop_name(item)  # keep the name: only the field goes missing
    _remove(data, item, "field")
    return f"{where}: group property {j}: group property mapping is missing a Salesforce field"


def empty_property_name(data, doc, i):
    where = label(doc, i)
    j, item = _pick_property(data, doc["mappings"][i - 1])
    item["property"] = data.draw(st.none() | BLANK, label="blank name")
    return f"{where}: group property {j}: group property name is empty"


def dollar_property_name(data, doc, i):
    where = label(doc, i)
    j, item = _pick_property(data, doc["mappings"][i - 1])
    name = "$" + data.draw(st.text(max_size=10), label="after $").strip()
    item["property"] = data.draw(PADDING) + name + data.draw(PADDING)
    return (
        f"{where}: group property {j}: group property name '{name}' must not start with '$' "
        "(reserved for Amplitude operations)"
    )


def _insert_property(data, m, j, item):
    """Insert item among the properties; return the (earlier, later) positions of it and property j."""
    k = data.draw(st.integers(1, len(m["properties"]) + 1), label="insert at")
    m["properties"].insert(k - 1, item)
    j = j + 1 if k <= j else j
    return min(j, k), max(j, k)


def duplicate_field(data, doc, i):
    where = label(doc, i)
    m = doc["mappings"][i - 1]
    j, item = _pick_property(data, m)
    field = item["field"].strip()
    new = {"field": data.draw(PADDING) + field, "property": _fresh(all_strings(doc), "another property")}
    earlier, later = _insert_property(data, m, j, new)
    return (
        f"{where}: group property {later}: Salesforce field '{field}' is already mapped by group "
        f"property {earlier} (each field maps to one group property)"
    )


def duplicate_property(data, doc, i):
    where = label(doc, i)
    m = doc["mappings"][i - 1]
    j, item = _pick_property(data, m)
    name = prop_name(item)
    new = {"field": _fresh_field(lower_fields(m)), "property": data.draw(PADDING) + name + data.draw(PADDING)}
    earlier, later = _insert_property(data, m, j, new)
    return (
        f"{where}: group property {later}: group property '{name}' is already mapped by group "
        f"property {earlier} (each group property comes from one field)"
    )


@st.composite
def _typo(draw: st.DrawFn, key: str) -> str:
    """One edit of a key: every such edit of the documented keys is closest to that key."""
    at = draw(st.integers(0, len(key) - 1))
    kind = draw(st.sampled_from(["delete", "replace", "insert", "swap"]))
    if kind == "delete":
        return key[:at] + key[at + 1 :]
    if kind == "replace":
        return key[:at] + draw(st.sampled_from(string.ascii_letters + "_")) + key[at + 1 :]
    if kind == "insert":
        return key[:at] + draw(st.sampled_from(string.ascii_lowercase + "_")) + key[at:]
    return key[:at] + key[at + 1 : at + 2] + key[at] + key[at + 2 :]


def unknown_keys(allowed: tuple[str, ...]) -> st.SearchStrategy[tuple[str, str]]:
    """(key, hint): a typo of an allowed key with its did-you-mean, or a key like none of them."""
    typos = st.sampled_from(allowed).flatmap(lambda k: _typo(k).map(lambda t: (t, f" (did you mean '{k}'?)")))
    # No character in common with any allowed key (all lower case): no hint.
    unrelated = st.text(alphabet=string.ascii_uppercase + string.digits + " -", min_size=1, max_size=12)
    return st.one_of(typos, unrelated.map(lambda t: (t, ""))).filter(lambda kh: kh[0] not in allowed)


JSON_VALUES: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.just([])
)


def unknown_mapping_key(data, doc, i):
    key, hint = data.draw(unknown_keys(MAPPING_KEYS), label="unknown key")
    doc["mappings"][i - 1][key] = data.draw(JSON_VALUES)
    return f"{label(doc, i)}: unknown key '{key}'{hint}"


def unknown_property_key(data, doc, i):
    j, item = _pick_property(data, doc["mappings"][i - 1])
    key, hint = data.draw(unknown_keys(PROPERTY_KEYS), label="unknown key")
    item[key] = data.draw(JSON_VALUES)
    return f"{label(doc, i)}: group property {j}: unknown key '{key}'{hint}"


# Name rules: put a given bad name in place; return (message prefix, what the message calls it).
def set_object(data, doc, i, bad):
    m = doc["mappings"][i - 1]
    m["object"] = bad
    return f"{i}: {bad} -> {m['group_type'].strip()}", "object"


def set_field(data, doc, i, bad):
    where = label(doc, i)
    j, item = _pick_property(data, doc["mappings"][i - 1])
    item["property"] = prop_name(item)  # keep the name (the defaulted case has its own test below)
    item["field"] = bad
    return f"{where}: group property {j}", "field"


def set_group_name_field(data, doc, i, bad):
    where = label(doc, i)
    doc["mappings"][i - 1]["group_name_field"] = bad
    return where, "group name field"


NAME_RULES: dict[str, tuple[Callable[..., tuple[str, str]], st.SearchStrategy[str]]] = {
    "object": (set_object, BAD_OBJECTS),
    "field": (set_field, BAD_FIELDS),
    "group name field": (set_group_name_field, BAD_FIELDS),
}


def _strict_name_rule(target: str) -> Callable[..., str]:
    setter, names = NAME_RULES[target]

    def rule(data, doc, i):
        bad = data.draw(names, label=f"bad {target}")
        prefix, what = setter(data, doc, i, bad)
        return f"{prefix}: {what} '{bad}' is not a valid Salesforce name"

    return rule


LOCAL_RULES: dict[str, Callable[..., str]] = {
    "missing object": missing_object,
    "missing group type": missing_group_type,
    "missing group name field": missing_group_name_field,
    "no properties": no_properties,
    "property without field": property_without_field,
    "empty property name": empty_property_name,
    "property name starting with $": dollar_property_name,
    "same field twice in a mapping": duplicate_field,
    "same property twice in a mapping": duplicate_property,
    "unknown mapping key": unknown_mapping_key,
    "unknown property key": unknown_property_key,
    "invalid object name": _strict_name_rule("object"),
    "invalid field name": _strict_name_rule("field"),
    "invalid group name field": _strict_name_rule("group name field"),
}
STRICT_ONLY = {"invalid object name", "invalid field name", "invalid group name field"}


# Document rules: mutate the whole document, return the one expected message.
def _pick_mapping(data, doc):
    return data.draw(st.integers(1, len(doc["mappings"])), label="mapping")


def _insert_mapping(data, doc, new):
    pos = data.draw(st.integers(1, len(doc["mappings"]) + 1), label="insert mapping at")
    doc["mappings"].insert(pos - 1, new)
    return pos


def _new_mapping(data, doc, obj, group_type, properties):
    return {
        "object": obj,
        "group_type": group_type,
        "group_name_field": data.draw(FIELDS),
        "properties": properties,
    }


def _fresh_properties(data, doc):
    taken = all_strings(doc)
    fields: set[str] = set()
    count = data.draw(st.integers(1, 3), label="new properties")
    return [{"field": _fresh_field(fields), "property": _fresh(taken, "new property")} for _ in range(count)]


def same_object_twice(data, doc):
    i = _pick_mapping(data, doc)
    m = doc["mappings"][i - 1]
    obj, group_type = m["object"].strip(), m["group_type"].strip()
    new = _new_mapping(data, doc, m["object"], m["group_type"], _fresh_properties(data, doc))
    pos = _insert_mapping(data, doc, new)
    i = i + 1 if pos <= i else i
    earlier, later = min(i, pos), max(i, pos)
    return (
        f"{later}: {obj} -> {group_type}: Salesforce object '{obj}' is already mapped to group type "
        f"'{group_type}' by {earlier}: {obj} -> {group_type}"
    )


def property_written_by_two_mappings(data, doc):
    i = _pick_mapping(data, doc)
    m = doc["mappings"][i - 1]
    group_type = m["group_type"].strip()
    _, item = _pick_property(data, m)
    name = prop_name(item)
    objects = {x["object"].lower() for x in doc["mappings"] if x["group_type"].strip() == group_type}
    obj = _fresh_field(objects, "Other")
    properties = [*_fresh_properties(data, doc), {"field": "Id", "property": data.draw(PADDING) + name}]
    properties = data.draw(st.permutations(properties), label="order")
    pos = _insert_mapping(data, doc, _new_mapping(data, doc, obj, m["group_type"], properties))
    i = i + 1 if pos <= i else i
    (earlier, earlier_obj), (later, later_obj) = sorted([(i, m["object"].strip()), (pos, obj)])
    return (
        f"{later}: {later_obj} -> {group_type}: group property '{name}' of group type '{group_type}' is "
        f"also written by {earlier}: {earlier_obj} -> {group_type}; one would overwrite the other"
    )


def too_many_group_types(data, doc):
    taken = {m["group_type"].strip() for m in doc["mappings"]}
    for _ in range(6 - len(taken) + data.draw(st.integers(0, 2), label="extra types")):
        group_type = _fresh(taken, "group type")
        new = _new_mapping(data, doc, data.draw(OBJECTS), group_type, _fresh_properties(data, doc))
        _insert_mapping(data, doc, new)
    types = list(dict.fromkeys(m["group_type"].strip() for m in doc["mappings"]))
    return (
        f"mappings use {len(types)} group types ({', '.join(types)}); an Amplitude project allows at most 5"
    )


def too_many_properties(data, doc):
    names = {prop_name(p) for m in doc["mappings"] for p in m["properties"]}
    total = 1001 + data.draw(st.integers(0, 3), label="extra properties")
    i = _pick_mapping(data, doc)
    m = doc["mappings"][i - 1]
    fields = lower_fields(m)
    taken = all_strings(doc)
    fresh = (n for n in range(1, 10_000) if f"p{n}" not in taken and f"bulk{n}__c" not in fields)
    at = data.draw(st.integers(0, len(m["properties"])), label="insert at")
    m["properties"][at:at] = [
        {"field": f"Bulk{n}__c", "property": f"p{n}"} for n, _ in zip(fresh, range(total - len(names)))
    ]
    return f"mappings define {total} distinct group properties; an Amplitude project allows at most 1000"


def unknown_top_key(data, doc):
    key, hint = data.draw(unknown_keys(TOP_KEYS), label="unknown key")
    doc[key] = data.draw(JSON_VALUES)
    return f"mapping: unknown key '{key}'{hint}"


def unsupported_version(data, doc):
    version = data.draw(st.integers().filter(lambda v: v != 1) | st.text(max_size=4), label="version")
    doc["version"] = version
    return f"mapping: unsupported version {version!r} (this release reads version 1)"


def no_mappings(data, doc):
    how = data.draw(st.sampled_from(["delete", [], None, {}, "Account"]), label="mappings")
    if how == "delete":
        del doc["mappings"]
    else:
        doc["mappings"] = how
    return "mapping: 'mappings' must be a non-empty list of group mappings"


DOCUMENT_RULES: dict[str, Callable[..., str]] = {
    "same object to the same group type twice": same_object_twice,
    "property written by two mappings of one group type": property_written_by_two_mappings,
    "more than 5 group types": too_many_group_types,
    "unknown top-level key": unknown_top_key,
    "unsupported version": unsupported_version,
    "no mappings": no_mappings,
}


@pytest.mark.parametrize("rule", list(LOCAL_RULES))
@FAST
@given(data=st.data())
def test_one_violation_of_a_mapping_rule_gives_exactly_its_message(rule, data):
    doc = data.draw(valid_documents(), label="valid document")
    i = _pick_mapping(data, doc)
    expected = LOCAL_RULES[rule](data, doc, i)
    assert validate(doc) == [expected]
    if rule not in STRICT_ONLY:
        assert validate(doc, strict_names=False) == [expected]


@pytest.mark.parametrize("rule", list(DOCUMENT_RULES))
@FAST
@given(data=st.data())
def test_one_violation_of_a_document_rule_gives_exactly_its_message(rule, data):
    doc = data.draw(valid_documents(), label="valid document")
    expected = DOCUMENT_RULES[rule](data, doc)
    assert validate(doc) == [expected]
    assert validate(doc, strict_names=False) == [expected]


@SLOW
@given(data=st.data())
def test_more_than_1000_properties_gives_exactly_its_message(data):
    doc = data.draw(valid_documents(max_mappings=3), label="valid document")
    expected = too_many_properties(data, doc)
    assert validate(doc) == [expected]


@FAST
@given(data=st.data())
def test_every_problem_is_reported_at_once(data):
    doc = data.draw(valid_documents(), label="valid document")
    count = len(doc["mappings"])
    broken = data.draw(st.lists(st.integers(1, count), min_size=1, max_size=count, unique=True))
    expected = []
    if data.draw(st.booleans(), label="top-level typo"):
        expected.append(unknown_top_key(data, doc))
    for i in sorted(broken):
        rule = data.draw(st.sampled_from(list(LOCAL_RULES)), label=f"rule for mapping {i}")
        expected.append(LOCAL_RULES[rule](data, doc, i))
    assert validate(doc) == expected


# -- strict and lenient names --------------------------------------------------------------


@pytest.mark.parametrize("target", list(NAME_RULES))
@FAST
@given(data=st.data())
def test_lenient_mode_accepts_non_salesforce_names(target, data):
    doc = data.draw(valid_documents(), label="valid document")
    i = _pick_mapping(data, doc)
    setter, names = NAME_RULES[target]
    bad = data.draw(names, label=f"bad {target}")
    prefix, what = setter(data, doc, i, bad)
    assert validate(doc) == [f"{prefix}: {what} '{bad}' is not a valid Salesforce name"]
    assert validate(doc, strict_names=False) == []
    config = parse_mapping(doc, strict_names=False)
    assert parse_mapping(config.to_dict(), strict_names=False) == config


@pytest.mark.parametrize("target", list(NAME_RULES))
@FAST
@given(data=st.data())
def test_lenient_mode_rejects_control_characters(target, data):
    doc = data.draw(valid_documents(), label="valid document")
    i = _pick_mapping(data, doc)
    setter, _ = NAME_RULES[target]
    bad = data.draw(CONTROL_NAMES, label=f"bad {target}")
    prefix, what = setter(data, doc, i, bad)
    assert validate(doc) == [f"{prefix}: {what} '{bad}' is not a valid Salesforce name"]
    assert validate(doc, strict_names=False) == [f"{prefix}: {what} {bad!r} contains control characters"]


@settings(SLOW, phases=[Phase.generate])
@given(data=st.data())
def test_rejected_field_with_default_property_name_gives_one_message(data):
    doc = data.draw(valid_documents(), label="valid document")
    i = _pick_mapping(data, doc)
    where = label(doc, i)
    j, item = _pick_property(data, doc["mappings"][i - 1])
    item.pop("property", None)
    bad = data.draw(BAD_FIELDS, label="bad field")
    item["field"] = bad
    assert validate(doc) == [f"{where}: group property {j}: field '{bad}' is not a valid Salesforce name"]
