"""SOQL against the org.

Field resolution (with the real INVALID_* errors), the datetime window, sorting, and rendering records (nested
relationship objects, ``attributes``) page by page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .data import Org, Table, name_value, take, to_18
from .errors import ApiError
from .schema import NAME_OBJECT, TEXT_TYPES, FieldDef, ObjectDef, find_object, is_polymorphic
from .soql import Bound, InList, Path, Query, SoqlError, parse

_NO_COLUMN = (
    "No such column '{name}' on entity '{entity}'. If you are attempting to use a custom field, "
    "be sure to append the '__c' after the custom field name. Please reference your WSDL or the "
    "describe call for the appropriate names."
)
_NO_RELATIONSHIP = (
    "Didn't understand relationship '{name}' in field path. If you are attempting to use a "
    "custom relationship, be sure to append the '__r' after the custom relationship name. "
    "Please reference your WSDL or the describe call for the appropriate names."
)
_NO_TYPE = (
    "sObject type '{name}' is not supported. If you are attempting to use a custom object, be "
    "sure to append the '__c' after the entity name. Please reference your WSDL or the describe "
    "call for the appropriate names."
)
# What the "must be of type X" errors call each field type.
_TYPE_WORDS = {
    "datetime": "dateTime",
    "date": "date",
    "boolean": "boolean",
    "int": "integer",
    "currency": "double",
    "double": "double",
    "percent": "double",
}

Getter = Callable[[int], Any]
Predicate = Callable[[int], bool]


@dataclass
class Resolved:
    """A path resolved against the schema: the reference fields to follow, then the field."""

    chain: list[FieldDef]
    field: FieldDef
    entity: ObjectDef

    @property
    def key(self) -> tuple[str, ...]:
        return (*(f.name for f in self.chain), self.field.name)


@dataclass(frozen=True)
class Blob:
    """A base64 field in a select list: the REST API writes the URL of the blob, not its data."""

    name: str


@dataclass
class Node:
    """Render tree for one object level: fields in select order, and nested relationships."""

    table: Table
    # (key, page renderer) for a field, (key, Blob) for a base64 field,
    # (key, (reference field, Node)) for a relationship
    items: list[tuple[str, Any]] = field(default_factory=list)
    children: dict[str, Node | NameNode] = field(default_factory=dict)


@dataclass
class NameNode:
    """Render tree for a polymorphic relationship: Name-object fields of each row's actual parent."""

    fields: list[str] = field(default_factory=list)


class CompiledQuery:
    """A parsed and resolved query, ready to run against the org's current rows."""

    def __init__(self, org: Org, text: str) -> None:
        self.org = org
        self.query: Query = parse(text)
        q = self.query
        obj = find_object(q.sobject)
        # FROM a non-queryable type (AggregateResult) is answered exactly like FROM an unknown
        # one: 400 INVALID_TYPE "sObject type 'AggregateResult' is not supported. …" with the
        # position header. (The other error seen for such types, INVALID_TYPE_FOR_OPERATION
        # "entity type AggregateResult does not support query", was not chosen.)
        if obj is None or not obj.queryable:
            raise SoqlError("INVALID_TYPE", _NO_TYPE.format(name=q.sobject), q.text, q.sobject_offset)
        self.obj = obj
        self.table = org.tables[obj.name]
        self.root = Node(self.table)
        seen: set[tuple[str, ...]] = set()
        for path in q.fields:
            resolved = self.resolve(path)
            if resolved.key in seen:
                raise SoqlError(
                    "MALFORMED_QUERY",
                    f"duplicate field selected: {path.text}",
                    q.text,
                    path.offset,
                )
            seen.add(resolved.key)
            self._add_to_tree(resolved)
        self.predicates = [self._bound(bound) for bound in q.where]
        self.sort_keys = [self._sort_getter(path) for path in q.order]

    # -- resolution -----------------------------------------------------------------------------
    def resolve(self, path: Path) -> Resolved:
        q = self.query
        parts = list(path.parts)
        entity = self.obj
        chain: list[FieldDef] = []
        offset = path.offset
        for part in parts[:-1]:
            ref = entity.relationships.get(part.lower())
            if ref is None:
                raise SoqlError("INVALID_FIELD", _NO_RELATIONSHIP.format(name=part), q.text, offset)
            chain.append(ref)
            if is_polymorphic(ref):
                # Through a polymorphic relationship the parent is the Name object, whatever
                # each row's actual object is: only its fields, and no relationships onward
                # (Owner.Department fails as "No such column 'Department' on entity 'Name'").
                entity = NAME_OBJECT
                continue
            target = find_object(ref.reference_to[0])
            assert target is not None  # every plain reference in the schema targets a known object
            entity = target
        f = entity.field(parts[-1])
        if f is None:
            raise SoqlError(
                "INVALID_FIELD",
                _NO_COLUMN.format(name=parts[-1], entity=entity.name),
                q.text,
                offset,
            )
        return Resolved(chain, f, entity)

    def getter(self, resolved: Resolved) -> Getter:
        """Row of the queried object -> value at the end of the path (None past a null ref)."""
        if not resolved.chain:
            return self.table.getter(resolved.field)
        # Each hop: the reference column, then the target table (None: polymorphic, the row's
        # object follows from the id, and the value is the Name object's view of that row).
        hops: list[tuple[list[Any], Table | None]] = []
        source = self.table
        for ref in resolved.chain:
            if is_polymorphic(ref):
                hops.append((source.columns[ref.name], None))
                break  # the Name object has no relationships: always the last hop
            target = self.org.tables[ref.reference_to[0]]
            hops.append((source.columns[ref.name], target))
            source = target
        org, name = self.org, resolved.field.name
        final = None if hops[-1][1] is None else source.getter(resolved.field)

        def follow(i: int) -> Any:
            row = i
            for column, target in hops:
                ref_id = column[row]
                if ref_id is None:
                    return None
                if target is None:
                    found = org.locate(ref_id)
                    return None if found is None else name_value(*found, name)
                row = target.index[ref_id]
            assert final is not None
            return final(row)

        return follow

    def _add_to_tree(self, resolved: Resolved) -> None:
        node: Node | NameNode = self.root
        for ref in resolved.chain:
            assert isinstance(node, Node)  # a NameNode (polymorphic) is always the last hop
            child = node.children.get(ref.name)
            if child is None:
                child = NameNode() if is_polymorphic(ref) else Node(self.org.tables[ref.reference_to[0]])
                node.children[ref.name] = child
                node.items.append((ref.relationship or ref.name, (ref, child)))
            node = child
        f = resolved.field
        if isinstance(node, NameNode):
            node.fields.append(f.name)
            return
        node.items.append((f.name, Blob(f.name) if f.type == "base64" else node.table.column_renderer(f)))

    # -- WHERE ----------------------------------------------------------------------------------
    def _bound(self, bound: Bound | InList) -> Predicate:
        q = self.query
        resolved = self.resolve(bound.path)
        f = resolved.field
        if isinstance(bound, InList):
            if f.type not in ("id", "reference"):
                raise SoqlError(
                    "INVALID_FIELD",
                    f"value of filter criterion for field '{f.name}' must be of type {f.type}",
                    q.text,
                    bound.offset,
                )
            wanted = {to_18(v[:15]) for v in bound.values}  # 15- and 18-character ids alike
            get_id = self.getter(resolved)
            return lambda i: get_id(i) in wanted
        if not f.filterable:
            raise SoqlError(
                "INVALID_FIELD",
                f"field '{f.name}' can not be filtered in a query call",
                q.text,
                bound.path.offset,
            )
        if f.type != "datetime":
            # Salesforce's wording for a literal of the wrong kind (here always a datetime).
            word = _TYPE_WORDS.get(f.type)
            if word is None:
                detail = "must be of type string and should be enclosed in quotes"
            else:
                detail = f"must be of type {word} and should not be enclosed in quotes"
            raise SoqlError(
                "INVALID_FIELD",
                f"value of filter criterion for field '{f.name}' {detail}",
                q.text,
                bound.offset,
            )
        get = self.getter(resolved)
        # Stored datetimes are milliseconds; literals may carry microseconds (singer-io bookmarks).
        target = bound.micros
        if bound.op == ">=":
            return lambda i: (v := get(i)) is not None and v * 1000 >= target
        return lambda i: (v := get(i)) is not None and v * 1000 < target

    # -- ORDER BY -------------------------------------------------------------------------------
    def _sort_getter(self, path: Path) -> Getter:
        resolved = self.resolve(path)
        f = resolved.field
        if not f.sortable:
            raise SoqlError(
                "INVALID_FIELD",
                f"field '{f.name}' can not be sorted in a query call",
                self.query.text,
                path.offset,
            )
        get = self.getter(resolved)
        if f.type in TEXT_TYPES:
            return lambda i: None if (v := get(i)) is None else v.lower()
        return get

    # -- execution ------------------------------------------------------------------------------
    def run(self, include_deleted: bool) -> list[int]:
        """The matching rows, sorted and limited (the caller holds ``org.lock``)."""
        deleted = self.table.columns.get("IsDeleted")
        preds = self.predicates
        rows = [
            i
            for i in range(len(self.table))
            if (include_deleted or deleted is None or not deleted[i]) and all(p(i) for p in preds)
        ]
        for get in reversed(self.sort_keys):

            def key(i: int, get: Getter = get) -> tuple[int, Any]:
                v = get(i)  # ascending with nulls first, Salesforce's default for ASC
                return (0, 0) if v is None else (1, v)

            rows.sort(key=key)
        if self.query.limit is not None:
            rows = rows[: self.query.limit]
        return rows

    @property
    def count_only(self) -> bool:
        return self.query.count


def render(org: Org, node: Node, rows: list[int], base: str) -> list[dict[str, Any]]:
    """Records as the REST API writes them: ``attributes`` first, then fields in select order.

    Works column by column over the page (then zips the columns into records), which is
    several times faster than building each record field by field.
    """
    if not rows:
        return []
    table = node.table
    name = table.obj.name
    prefix = f"{base}/sobjects/{name}/"
    keys = ["attributes"]
    columns: list[list[Any]] = [[{"type": name, "url": prefix + rid} for rid in take(table.ids, rows)]]
    for key, item in node.items:
        keys.append(key)
        if isinstance(item, tuple):
            ref, child = item
            refs = take(table.columns[ref.name], rows)
            if isinstance(child, NameNode):
                columns.append([None if r is None else _name_record(org, child, r, base) for r in refs])
                continue
            index = child.table.index
            parents = iter(render(org, child, [index[r] for r in refs if r is not None], base))
            columns.append([None if r is None else next(parents) for r in refs])
        elif isinstance(item, Blob):
            # e.g. "/services/data/v62.0/sobjects/Document/015…/Body"; null when there is no body
            values = take(table.columns[item.name], rows)
            columns.append(
                [
                    None if v is None else f"{prefix}{rid}/{item.name}"
                    for v, rid in zip(values, take(table.ids, rows), strict=True)
                ]
            )
        else:
            columns.append(item(rows))
    return [dict(zip(keys, values, strict=True)) for values in zip(*columns, strict=True)]


def _name_record(org: Org, node: NameNode, ref_id: str, base: str) -> dict[str, Any] | None:
    """A polymorphic parent as the REST API nests it.

    ``attributes.type`` is "Name" (the relationship's type, not the row's object), the URL is the actual
    record's.

    "Name" as the type: Salesforce Inspector shows it for polymorphic Owner results
    (https://github.com/tprouvot/Salesforce-Inspector-reloaded/issues/95). The URL naming the
    row's own object is the emulator's choice: no public recording of it was found.
    """
    found = org.locate(ref_id)
    if found is None:
        return None
    table, row = found
    record: dict[str, Any] = {
        "attributes": {"type": "Name", "url": f"{base}/sobjects/{table.obj.name}/{ref_id}"}
    }
    for name in node.fields:
        record[name] = name_value(table, row, name)
    return record


def compile_query(org: Org, text: str) -> CompiledQuery:
    """Parse and resolve ``text``; raises ``ApiError`` with Salesforce's code and message."""
    if not text or not text.strip():
        raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
    return CompiledQuery(org, text)
