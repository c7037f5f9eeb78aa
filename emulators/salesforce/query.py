"""SOQL against the org: field resolution (with the real INVALID_* errors), filtering, sorting,
and rendering records (nested relationship objects, ``attributes``) page by page."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .data import Org, Table, take, valid_id
from .errors import ApiError
from .schema import NAME_OBJECT_FIELDS, NUMBER_TYPES, TEXT_TYPES, FieldDef, ObjectDef, find_object
from .soql import Comparison, Condition, Literal, Logic, Not, Path, Query, SoqlError, parse

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
_LITERAL_FOR_TYPE = {"datetime": "datetime", "date": "date", "boolean": "boolean"}

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
    children: dict[str, Node] = field(default_factory=dict)


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
        if q.offset is not None and q.offset > 2000:
            raise ApiError(400, "NUMBER_OUTSIDE_VALID_RANGE", "Maximum SOQL offset allowed is 2000")
        self.count_getter: Getter | None = None
        if q.count is not None and q.count.path is not None:
            self.count_getter = self.getter(self.resolve(q.count.path))
        self.predicate = self._compile(q.where) if q.where is not None else None
        self.sort_keys = [(self._sort_getter(item.path), item.desc, item.nulls_first) for item in q.order]

    # -- resolution -----------------------------------------------------------------------------
    def resolve(self, path: Path) -> Resolved:
        q = self.query
        parts = list(path.parts)
        # `Account.Name` (or `a.Name` with an alias) may name the queried object itself.
        if len(parts) > 1 and (
            (q.alias and parts[0].lower() == q.alias.lower())
            or (parts[0].lower() == self.obj.name.lower() and parts[0].lower() not in self.obj.relationships)
        ):
            parts = parts[1:]
        entity = self.obj
        chain: list[FieldDef] = []
        offset = path.offset
        for part in parts[:-1]:
            ref = entity.relationships.get(part.lower())
            if ref is None:
                raise SoqlError("INVALID_FIELD", _NO_RELATIONSHIP.format(name=part), q.text, offset)
            chain.append(ref)
            target = find_object(ref.reference_to[-1])
            assert target is not None  # every reference in the schema targets a known object
            entity = target
        f = entity.field(parts[-1])
        if chain and len(chain[-1].reference_to) > 1 and parts[-1].lower() not in NAME_OBJECT_FIELDS:
            raise SoqlError("INVALID_FIELD", _NO_COLUMN.format(name=parts[-1], entity="Name"), q.text, offset)
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
        table = self.org.tables[resolved.entity.name]
        final = table.getter(resolved.field)
        if not resolved.chain:
            return final
        hops: list[tuple[list[Any], dict[str, int]]] = []
        source = self.table
        for ref in resolved.chain:
            target = self.org.tables[ref.reference_to[-1]]
            hops.append((source.columns[ref.name], target.index))
            source = target

        def follow(i: int) -> Any:
            row = i
            for column, index in hops:
                ref_id = column[row]
                if ref_id is None:
                    return None
                row = index[ref_id]
            return final(row)

        return follow

    def _add_to_tree(self, resolved: Resolved) -> None:
        node = self.root
        for ref in resolved.chain:
            child = node.children.get(ref.name)
            if child is None:
                child = Node(self.org.tables[ref.reference_to[-1]])
                node.children[ref.name] = child
                node.items.append((ref.relationship or ref.name, (ref, child)))
            node = child
        f = resolved.field
        node.items.append((f.name, Blob(f.name) if f.type == "base64" else node.table.column_renderer(f)))

    # -- WHERE ----------------------------------------------------------------------------------
    def _compile(self, cond: Condition) -> Predicate:
        if isinstance(cond, Logic):
            preds = [self._compile(item) for item in cond.items]
            if cond.op == "AND":
                return lambda i: all(p(i) for p in preds)
            return lambda i: any(p(i) for p in preds)
        if isinstance(cond, Not):
            inner = self._compile(cond.item)
            return lambda i: not inner(i)
        return self._comparison(cond)

    def _comparison(self, cmp: Comparison) -> Predicate:
        q = self.query
        resolved = self.resolve(cmp.path)
        f = resolved.field
        if not f.filterable:
            raise SoqlError(
                "INVALID_FIELD",
                f"field '{f.name}' can not be filtered in a query call",
                q.text,
                cmp.path.offset,
            )
        get = self.getter(resolved)
        values = cmp.value if isinstance(cmp.value, tuple) else (cmp.value,)
        for lit in values:
            self._check_literal(f, cmp, lit)
        op = cmp.op
        if op in ("IN", "NOT IN", "INCLUDES", "EXCLUDES"):
            return self._membership(f, op, get, values)
        lit = values[0]
        if lit.kind == "null":
            if op == "=":
                return lambda i: get(i) is None
            if op == "!=":
                return lambda i: get(i) is not None
            raise SoqlError("MALFORMED_QUERY", f"invalid operator on null: {op}", q.text, cmp.offset)
        if op == "LIKE":
            if f.type not in TEXT_TYPES and f.type not in ("id", "reference"):
                raise SoqlError(
                    "INVALID_FIELD",
                    f"invalid operator on field '{f.name}': LIKE",
                    q.text,
                    cmp.offset,
                )
            pattern = _like_regex(lit.value)
            return lambda i: (v := get(i)) is not None and pattern.fullmatch(v) is not None
        if f.type == "boolean" and op not in ("=", "!="):
            raise SoqlError(
                "INVALID_FIELD",
                f"invalid operator on boolean field '{f.name}': {op}",
                q.text,
                cmp.offset,
            )
        norm = _normaliser(f)
        target = _literal_value(f, lit, norm)
        compare = _OPERATORS[op]
        if op == "!=":
            # SOQL's != keeps rows whose value is null (unlike SQL).
            return lambda i: (v := get(i)) is None or compare(norm(v), target)
        return lambda i: (v := get(i)) is not None and compare(norm(v), target)

    def _membership(self, f: FieldDef, op: str, get: Getter, values: tuple[Literal, ...]) -> Predicate:
        if op in ("INCLUDES", "EXCLUDES"):
            if f.type != "multipicklist":
                raise SoqlError(
                    "INVALID_FIELD",
                    f"includes or excludes operator only valid on multipicklist field: {f.name}",
                    self.query.text,
                    values[0].offset,
                )
            wanted = [frozenset(p.lower() for p in lit.value.split(";")) for lit in values]

            def includes(i: int) -> bool:
                v = get(i)
                have = frozenset(p.lower() for p in v.split(";")) if v else frozenset()
                return any(w <= have for w in wanted)

            if op == "INCLUDES":
                return includes
            return lambda i: not includes(i)
        norm = _normaliser(f)
        members = {_literal_value(f, lit, norm) for lit in values if lit.kind != "null"}
        with_null = any(lit.kind == "null" for lit in values)
        if op == "IN":
            return lambda i: with_null if (v := get(i)) is None else norm(v) in members
        return lambda i: (not with_null) if (v := get(i)) is None else norm(v) not in members

    def _check_literal(self, f: FieldDef, cmp: Comparison, lit: Literal) -> None:
        """Reject literals of the wrong kind with the messages Salesforce gives."""
        if lit.kind == "null":
            return
        q = self.query
        expected = _LITERAL_FOR_TYPE.get(f.type, "number" if f.type in NUMBER_TYPES else "string")
        if f.type == "address":
            expected = "none"
        is_id = f.type in ("id", "reference") and cmp.op != "LIKE"
        if lit.kind == expected:
            if is_id and not valid_id(lit.value):
                raise SoqlError(
                    "INVALID_QUERY_FILTER_OPERATOR",
                    f"invalid ID field: {lit.value}",
                    q.text,
                    lit.offset,
                )
            return
        if expected == "string":
            detail = (
                f"value of filter criterion for field '{f.name}' must be of type string and "
                "should be enclosed in quotes"
            )
        else:
            word = _TYPE_WORDS.get(f.type, f.type)
            detail = (
                f"value of filter criterion for field '{f.name}' must be of type {word} and "
                "should not be enclosed in quotes"
            )
        raise SoqlError("INVALID_FIELD", detail, q.text, lit.offset)

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
        n = len(self.table)
        deleted = self.table.columns.get("IsDeleted")
        pred = self.predicate
        if deleted is not None and not include_deleted:
            if pred is None:
                rows = [i for i in range(n) if not deleted[i]]
            else:
                rows = [i for i in range(n) if not deleted[i] and pred(i)]
        else:
            rows = list(range(n)) if pred is None else [i for i in range(n) if pred(i)]
        for get, desc, nulls_first in reversed(self.sort_keys):
            null_flag = int(nulls_first == desc)
            value_flag = 1 - null_flag

            def key(i: int, get: Getter = get, nf: int = null_flag, vf: int = value_flag) -> Any:
                v = get(i)
                return (nf, 0) if v is None else (vf, v)

            rows.sort(key=key, reverse=desc)
        q = self.query
        start = q.offset or 0
        if start or q.limit is not None:
            rows = rows[start : None if q.limit is None else start + q.limit]
        return rows

    def aggregate(self, rows: list[int]) -> list[dict[str, Any]] | None:
        """For ``COUNT(field)``: the one AggregateResult record; None for other queries."""
        count = self.query.count
        if count is None or count.path is None:
            return None
        get = self.count_getter
        assert get is not None
        total = sum(1 for i in rows if get(i) is not None)
        return [{"attributes": {"type": "AggregateResult"}, count.alias or "expr0": total}]

    @property
    def count_only(self) -> bool:
        return self.query.count is not None


def render(node: Node, rows: list[int], base: str) -> list[dict[str, Any]]:
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
            index = child.table.index
            parents = iter(render(child, [index[r] for r in refs if r is not None], base))
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


def _normaliser(f: FieldDef) -> Callable[[Any], Any]:
    if f.type == "datetime":
        return _ms_to_micros
    if f.type in ("id", "reference"):
        return _first15
    if f.type == "multipicklist":
        return _pick_set
    if f.type in TEXT_TYPES:
        return str.lower  # SOQL compares text case-insensitively
    return _same


def _literal_value(f: FieldDef, lit: Literal, norm: Callable[[Any], Any]) -> Any:
    """A literal in the same comparable form as ``norm`` gives stored values."""
    if f.type == "datetime":
        return lit.value  # already epoch microseconds
    return norm(lit.value)


def _ms_to_micros(v: int) -> int:
    # Stored datetimes are milliseconds; literals may carry microseconds (singer-io bookmarks).
    return v * 1000


def _first15(v: str) -> str:
    return v[:15]


def _pick_set(v: str) -> frozenset[str]:
    return frozenset(p.lower() for p in v.split(";"))


def _same(v: Any) -> Any:
    return v


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _like_regex(pattern: str) -> re.Pattern[str]:
    """SOQL LIKE: ``%`` any run, ``_`` one character, ``\\%``/``\\_`` literal; case-insensitive."""
    out = []
    k = 0
    while k < len(pattern):
        c = pattern[k]
        if c == "\\" and k + 1 < len(pattern) and pattern[k + 1] in "%_":
            out.append(re.escape(pattern[k + 1]))
            k += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        k += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def compile_query(org: Org, text: str) -> CompiledQuery:
    """Parse and resolve ``text``; raises ``ApiError`` with Salesforce's code and message."""
    if not text or not text.strip():
        raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
    return CompiledQuery(org, text)
