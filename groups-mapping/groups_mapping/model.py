"""The mapping model: which object becomes which Amplitude group type, and how fields become properties.

Instances are built only by :func:`groups_mapping.validate.parse_mapping`, so every instance is valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1

# How tap-salesforce-groups signs each stream's SCHEMA: the schema's top-level description ends
# with this (a standard JSON Schema key, so it survives Meltano's catalog round trip). Its rows
# need the mapping on the target too; without it they would become stray group types.
TAP_SIGNATURE = "(tap-salesforce-groups)"


def signed_description(stream: str) -> str:
    """The description tap-salesforce-groups gives a stream's schema."""
    return f"{stream}: the fields its groups mapping reads {TAP_SIGNATURE}"


def is_signed(schema: Mapping[str, Any]) -> bool:
    """Whether a SCHEMA comes from tap-salesforce-groups (see :data:`TAP_SIGNATURE`)."""
    description = schema.get("description")
    return isinstance(description, str) and description.endswith(TAP_SIGNATURE)


@dataclass(frozen=True)
class PropertyMapping:
    """One Salesforce field (or relationship path) imported as one named group property."""

    field: str
    property: str

    def to_dict(self) -> dict[str, str]:
        """The property in the mapping file's format."""
        return {"field": self.field, "property": self.property}


@dataclass(frozen=True)
class GroupMapping:
    """One relation: rows of ``object`` become groups of ``group_type`` named by ``group_name_field``."""

    index: int
    object: str
    group_type: str
    group_name_field: str
    properties: tuple[PropertyMapping, ...]

    @property
    def label(self) -> str:
        """How messages name this mapping, as Amplitude's UI titles its cards: ``2: Account -> org id``."""
        return f"{self.index}: {self.object} -> {self.group_type}"

    @property
    def fields(self) -> tuple[str, ...]:
        """Every source field this mapping reads: the group name field first, then properties in order."""
        seen = dict.fromkeys([self.group_name_field, *(p.field for p in self.properties)])
        return tuple(seen)

    def group_value(self, record: Mapping[str, Any]) -> Any:
        """The raw group name field value of a record (``None`` when absent)."""
        return record.get(self.group_name_field)

    def property_values(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Property name → raw record value, in mapping order; a field missing from the record is None."""
        return {p.property: record.get(p.field) for p in self.properties}

    def to_dict(self) -> dict[str, Any]:
        """The group mapping in the mapping file's format."""
        return {
            "object": self.object,
            "group_type": self.group_type,
            "group_name_field": self.group_name_field,
            "properties": [p.to_dict() for p in self.properties],
        }

    @classmethod
    def for_stream(
        cls, stream: str, key_property: str, fields: Iterable[str], index: int = 1
    ) -> GroupMapping:
        """The implicit mapping used without a mapping file: every other field, under its own name."""
        props = tuple(PropertyMapping(f, f) for f in fields if f != key_property)
        return cls(index, stream, stream, key_property, props)


@dataclass(frozen=True)
class MappingConfig:
    """A whole mapping file: an ordered list of group mappings."""

    mappings: tuple[GroupMapping, ...]
    version: int = FORMAT_VERSION

    @property
    def objects(self) -> tuple[str, ...]:
        """Mapped objects (stream names), each once, in first-mapped order."""
        return tuple(dict.fromkeys(m.object for m in self.mappings))

    def for_object(self, name: str) -> tuple[GroupMapping, ...]:
        """Every mapping that reads this object; one object may feed several group types."""
        return tuple(m for m in self.mappings if m.object == name)

    def fields_for(self, name: str) -> tuple[str, ...]:
        """The union of fields the mappings of one object read, in first-mentioned order."""
        return tuple(dict.fromkeys(f for m in self.for_object(name) for f in m.fields))

    def to_dict(self) -> dict[str, Any]:
        """The normalised mapping, in the file format (what the export command prints)."""
        return {"version": self.version, "mappings": [m.to_dict() for m in self.mappings]}


def json_schema_path() -> Path:
    """The JSON Schema of the mapping file that ships with the package (for editors and CI)."""
    return Path(__file__).with_name("mapping.schema.json")
