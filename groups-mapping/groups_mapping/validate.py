"""The one validator of the mapping format: every problem at once, before any network call.

Messages name the mapping the way Amplitude's UI titles its cards (``2: Account -> org id``)
and reuse Amplitude's wording where it has one.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from groups_mapping.model import FORMAT_VERSION, GroupMapping, MappingConfig, PropertyMapping

# Amplitude's project limits (account-level reporting).
MAX_GROUP_TYPES = 5
MAX_PROPERTIES = 1000

# Salesforce API names: a letter, then letters, digits and underscores (custom ones end in __c,
# relationships in __r). A path has at most 5 relationship hops, SOQL's own limit. Nothing from
# the mapping reaches SOQL unless it matches these.
_NAME = r"[A-Za-z][A-Za-z0-9_]*"
SALESFORCE_OBJECT = re.compile(rf"^{_NAME}$")
SALESFORCE_FIELD = re.compile(rf"^{_NAME}(\.{_NAME}){{0,5}}$")

TOP_KEYS = ("version", "mappings")
MAPPING_KEYS = ("object", "group_type", "group_name_field", "properties")
MAX_NAME_LENGTH = 1024  # Amplitude's limit on a string: longer group types and property names fail
PROPERTY_KEYS = ("field", "property")


class MappingError(ValueError):
    """The mapping is invalid; ``problems`` lists every problem, one line each."""

    def __init__(self, problems: list[str], source: str = "mapping") -> None:
        self.problems = problems
        self.source = source
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{source}: {count}: " + "; ".join(problems))

    def report(self) -> str:
        """Multi-line form for terminals: a header, then one problem per line."""
        lines = [f"{self.source} is invalid ({len(self.problems)} problems):"]
        return "\n".join(lines + [f"  - {p}" for p in self.problems])


def _unknown_keys(where: str, given: Mapping[str, Any], allowed: tuple[str, ...]) -> list[str]:
    problems = []
    for key in given:
        if key in allowed:
            continue
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        problems.append(f"{where}: unknown key '{key}'{hint}")
    return problems


def _text(value: Any) -> str | None:
    """A trimmed non-empty string, or None for anything missing, blank or not a string."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _not_text(where: str, key: str, value: Any) -> list[str]:
    """A problem for a value that is present but not a string (JSON numbers, lists, …)."""
    if value is None or isinstance(value, str):
        return []
    return [f"{where}: '{key}' must be a string, not {type(value).__name__}"]


def _check_name(value: Any, pattern: re.Pattern[str], what: str, strict: bool) -> str | None:
    """Problem text when a Salesforce name is malformed (strict) or unprintable (lenient)."""
    if strict and not pattern.match(value):
        return f"{what} '{value}' is not a valid Salesforce name"
    if not strict and any(unicodedata.category(c) == "Cc" for c in value):
        return f"{what} {value!r} contains control characters"
    return None


def _parse_properties(label: str, raw: Any, strict: bool) -> tuple[list[PropertyMapping], list[str]]:
    problems: list[str] = []
    props: list[PropertyMapping] = []
    if raw is None or raw == []:
        return props, [f"{label}: group mapping has no group properties"]
    if not isinstance(raw, list):
        return props, [f"{label}: 'properties' must be a list of {{field, property}} objects"]
    seen_fields: dict[str, int] = {}
    seen_props: dict[str, int] = {}
    for n, item in enumerate(raw, start=1):
        where = f"{label}: group property {n}"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: must be an object with 'field' and 'property'")
            continue
        problems += _unknown_keys(where, item, PROPERTY_KEYS)
        problems += _not_text(where, "field", item.get("field")) + _not_text(
            where, "property", item.get("property")
        )
        field = _text(item.get("field"))
        if field is None:
            problems.append(f"{where}: group property mapping is missing a Salesforce field")
        elif bad := _check_name(field, SALESFORCE_FIELD, "field", strict):
            problems.append(f"{where}: {bad}")
            field = None
        prop: str | None = None
        if "property" in item:
            prop = _text(item["property"])
            if prop is None and isinstance(item["property"], (str, type(None))):
                problems.append(f"{where}: group property name is empty")
        elif field is not None:
            prop = field  # the name defaults to the field, as the README says
        if prop is not None and len(prop) > MAX_NAME_LENGTH:
            problems.append(f"{where}: group property name is longer than {MAX_NAME_LENGTH} characters")
            prop = None
        if prop is not None and prop.startswith("$"):
            problems.append(
                f"{where}: group property name '{prop}' must not start with '$' "
                "(reserved for Amplitude operations)"
            )
            prop = None
        if field is not None:
            # Salesforce API names are case-insensitive: Name and name are one field.
            if field.lower() in seen_fields:
                problems.append(
                    f"{where}: Salesforce field '{field}' is already mapped by group property "
                    f"{seen_fields[field.lower()]} (each field maps to one group property)"
                )
            seen_fields.setdefault(field.lower(), n)
        if prop is not None:
            if prop in seen_props:
                problems.append(
                    f"{where}: group property '{prop}' is already mapped by group property "
                    f"{seen_props[prop]} (each group property comes from one field)"
                )
            seen_props.setdefault(prop, n)
        if field is not None and prop is not None:
            props.append(PropertyMapping(field, prop))
    return props, problems


def _parse_one(index: int, raw: Any, strict: bool) -> tuple[GroupMapping | None, list[str]]:
    if not isinstance(raw, Mapping):
        return None, [f"{index}: Unknown -> Unknown: must be an object"]
    obj = _text(raw.get("object"))
    group_type = _text(raw.get("group_type"))
    label = f"{index}: {obj or 'Unknown'} -> {group_type or 'Unknown'}"
    problems = _unknown_keys(label, raw, MAPPING_KEYS)

    def required(key: str, missing: str) -> str | None:
        value = _text(raw.get(key))
        if value is None:
            problems.extend(_not_text(label, key, raw.get(key)) or [f"{label}: {missing}"])
        return value

    obj = required("object", "group mapping is missing Salesforce object")
    if obj is not None and (bad := _check_name(obj, SALESFORCE_OBJECT, "object", strict)):
        problems.append(f"{label}: {bad}")
    if (group_type := required("group_type", "group mapping is missing group type")) is not None and len(
        group_type
    ) > MAX_NAME_LENGTH:
        # Amplitude refuses longer strings as names: every request of this type would fail.
        problems.append(f"{label[:80]}...: group type is longer than {MAX_NAME_LENGTH} characters")
    name_field = required(
        "group_name_field", "group mapping is missing a Salesforce field to represent group id"
    )
    if name_field is not None and (
        bad := _check_name(name_field, SALESFORCE_FIELD, "group name field", strict)
    ):
        problems.append(f"{label}: {bad}")
    props, prop_problems = _parse_properties(label, raw.get("properties"), strict)
    problems += prop_problems
    if problems:
        return None, problems
    # No problems means all three were found (this narrows the types too).
    assert obj is not None
    assert group_type is not None
    assert name_field is not None
    return GroupMapping(index, obj, group_type, name_field, tuple(props)), []


def _cross_mapping_problems(mappings: list[GroupMapping], sources: dict[int, str] | None = None) -> list[str]:
    """Rules that span mappings: duplicate relations, properties written twice, project limits.

    With ``sources`` (``id(mapping)`` → the file it comes from) the mappings are several files
    used together, and only problems no single file has are reported: each file was checked alone.
    """

    def where(m: GroupMapping) -> str:
        return f"{sources[id(m)]}: {m.label}" if sources else m.label

    def same_file(a: GroupMapping, b: GroupMapping) -> bool:
        return sources is not None and sources[id(a)] == sources[id(b)]

    def origin(m: GroupMapping, field: str) -> tuple[str, str, str]:
        return (m.object.lower(), m.group_name_field.lower(), field.lower())

    problems: list[str] = []
    relations: dict[tuple[str, str], GroupMapping] = {}
    writers: dict[tuple[str, str], tuple[GroupMapping, tuple[str, str, str]]] = {}
    for m in mappings:
        first = relations.setdefault((m.object.lower(), m.group_type), m)
        if first is not m and not sources:
            problems.append(
                f"{where(m)}: Salesforce object '{m.object}' is already mapped to group type "
                f"'{m.group_type}' by {where(first)}"
            )
        for p in m.properties:
            owner, owner_origin = writers.setdefault((m.group_type, p.property), (m, origin(m, p.field)))
            # Across files, the same field of the same rows under the same name is one value
            # (a shard repeating part of the whole mapping), not two writers.
            if (
                owner is not m
                and not same_file(owner, m)
                and (not sources or owner_origin != origin(m, p.field))
            ):
                problems.append(
                    f"{where(m)}: group property '{p.property}' of group type '{m.group_type}' is "
                    f"also written by {where(owner)}; one would overwrite the other"
                )
    together = f" in {', '.join(dict.fromkeys(sources.values()))} together" if sources else ""
    group_types = dict.fromkeys(m.group_type for m in mappings)
    if len(group_types) > MAX_GROUP_TYPES and not _one_file_alone(mappings, sources, _group_types):
        problems.append(
            f"mappings{together} use {len(group_types)} group types ({', '.join(group_types)}); "
            f"an Amplitude project allows at most {MAX_GROUP_TYPES}"
        )
    properties = {p.property for m in mappings for p in m.properties}
    if len(properties) > MAX_PROPERTIES and not _one_file_alone(mappings, sources, _properties):
        problems.append(
            f"mappings{together} define {len(properties)} distinct group properties; "
            f"an Amplitude project allows at most {MAX_PROPERTIES}"
        )
    return problems


def _group_types(mappings: list[GroupMapping]) -> bool:
    return len({m.group_type for m in mappings}) > MAX_GROUP_TYPES


def _properties(mappings: list[GroupMapping]) -> bool:
    return len({p.property for m in mappings for p in m.properties}) > MAX_PROPERTIES


def _one_file_alone(
    mappings: list[GroupMapping],
    sources: dict[int, str] | None,
    over: Callable[[list[GroupMapping]], bool],
) -> bool:
    """Whether one file alone is over a limit (then that file's own check reported it)."""
    if not sources:
        return False
    by_file: dict[str, list[GroupMapping]] = {}
    for m in mappings:
        by_file.setdefault(sources[id(m)], []).append(m)
    return any(over(group) for group in by_file.values())


def problems_together(configs: Mapping[str, MappingConfig]) -> list[str]:
    """The cross-mapping rules over every mapping one Amplitude project receives together.

    ``configs`` maps a name for each mapping file (its path, or ``mapping setting``) to its
    parsed mapping; each was validated alone already. Rules checked per file are not checked
    when a project splits its mapping (shards, inherited plugins, environments): this checks
    them across the files, naming both files in each problem. Identical mappings count once.
    """
    unique: dict[str, tuple[str, MappingConfig]] = {}
    for name, config in configs.items():
        unique.setdefault(json.dumps(config.to_dict(), sort_keys=True), (name, config))
    if len(unique) < 2:
        return []
    mappings = [m for _, config in unique.values() for m in config.mappings]
    sources = {id(m): name for name, config in unique.values() for m in config.mappings}
    return _cross_mapping_problems(mappings, sources)


def deleted_flags(config: MappingConfig, deleted_property: str) -> dict[int, str]:
    """The property each mapping flags in ``deleted_records: flag`` mode, by mapping index.

    ``deleted_property`` when one object feeds the group type; when several do (a child object
    keyed by its parent's id), each object's rows flag ``<object> <deleted_property>``, so a
    deleted child row never marks its live parent's group as deleted.
    """
    objects: dict[str, set[str]] = {}
    for m in config.mappings:
        objects.setdefault(m.group_type, set()).add(m.object.lower())
    return {
        m.index: deleted_property if len(objects[m.group_type]) == 1 else f"{m.object} {deleted_property}"
        for m in config.mappings
    }


def deleted_flag_problems(config: MappingConfig | None, deleted_property: str) -> list[str]:
    """The flag must be a usable property name that no mapped property of its group type uses."""
    if not deleted_property.strip() or deleted_property.startswith("$"):
        return [f"deleted_property {deleted_property!r} must be a non-empty name not starting with '$'"]
    if config is None:
        return []
    written = {(m.group_type, p.property): m for m in reversed(config.mappings) for p in m.properties}
    problems = []
    for m in config.mappings:
        flag = deleted_flags(config, deleted_property)[m.index]
        owner = written.get((m.group_type, flag))
        if owner is not None:
            problems.append(
                f"{m.label}: the deleted_records flag '{flag}' of group type '{m.group_type}' is also "
                f"a group property of {owner.label}; set deleted_property to another name"
            )
    return problems


def validate(raw: Any, *, strict_names: bool = True) -> list[str]:
    """Every problem with a mapping document, one message each; empty when it is valid."""
    try:
        parse_mapping(raw, strict_names=strict_names)
    except MappingError as exc:
        return exc.problems
    return []


def parse_mapping(raw: Any, *, strict_names: bool = True, source: str = "mapping") -> MappingConfig:
    """Validate a mapping document and build the model, or raise :class:`MappingError`.

    ``strict_names`` requires Salesforce API names (the tap splices them into SOQL); the target
    turns it off so that any tap's stream and field names work.
    """
    if not isinstance(raw, Mapping):
        raise MappingError(["the mapping must be a JSON object with 'version' and 'mappings'"], source)
    problems = _unknown_keys("mapping", raw, TOP_KEYS)
    version = raw.get("version", FORMAT_VERSION)
    if type(version) is not int or version != FORMAT_VERSION:  # True == 1, but is not a version
        problems.append(f"mapping: unsupported version {version!r} (this release reads version 1)")
    items = raw.get("mappings")
    if not isinstance(items, list) or not items:
        problems.append("mapping: 'mappings' must be a non-empty list of group mappings")
        items = []
    mappings: list[GroupMapping] = []
    for index, item in enumerate(items, start=1):
        mapping, item_problems = _parse_one(index, item, strict_names)
        problems += item_problems
        if mapping is not None:
            mappings.append(mapping)
    problems += _cross_mapping_problems(mappings)
    if problems:
        raise MappingError(problems, source)
    return MappingConfig(tuple(mappings))


def load_mapping(
    mapping: Any = None, mapping_file: str | Path | None = None, *, strict_names: bool = True
) -> MappingConfig:
    """Load from the ``mapping`` setting (object or JSON text) or the ``mapping_file`` setting."""
    if mapping is not None and mapping_file:
        raise MappingError(["set either 'mapping' or 'mapping_file', not both"], "settings")
    if mapping_file:
        path = Path(mapping_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise MappingError([f"cannot read mapping_file: {exc.strerror}"], str(path)) from exc
        except UnicodeDecodeError as exc:
            problem = f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"
            raise MappingError([problem], str(path)) from exc
        return _parse_text(text, str(path), strict_names)
    if isinstance(mapping, str):
        return _parse_text(mapping, "mapping setting", strict_names)
    if mapping is None:
        raise MappingError(["set 'mapping_file' or 'mapping'"], "settings")
    return parse_mapping(mapping, strict_names=strict_names, source="mapping setting")


def _parse_text(text: str, source: str, strict_names: bool) -> MappingConfig:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MappingError(
            [f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"], source
        ) from exc
    return parse_mapping(raw, strict_names=strict_names, source=source)
