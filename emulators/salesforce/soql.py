"""A parser for the SOQL our plugins send, with Salesforce's error messages.

Grammar (keywords case-insensitive, any whitespace between tokens)::

    SELECT (COUNT() | path {, path}) FROM Object
        [WHERE cond {AND cond}]   where cond is path (>= | <) datetime | path IN ('id', …)
        [ORDER BY path [ASC] {, path [ASC]}] [LIMIT n]

That is all ``tap_salesforce_groups.soql.build_soql`` and ``bench/raw_floor.py`` write. Anything
else real SOQL has (``OR``, ``NOT``, parentheses, ``IN``, ``LIKE``, ``=``, string literals,
``DESC``, ``NULLS``, ``OFFSET``, ``COUNT(field)``, aliases, ``IN`` of anything but quoted
ids, …) is refused with
``MALFORMED_QUERY`` naming the token, so a plugin that starts sending it fails in the tests
instead of getting an answer the emulator made up. Datetimes are unquoted
(``2025-01-31T00:00:00.000Z``, optional fraction of any length, ``Z``, ``+hhmm`` or ``+hh:mm``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from .errors import ApiError

KEYWORDS = frozenset({"SELECT", "FROM", "WHERE", "AND", "ORDER", "BY", "ASC", "LIMIT", "IN"})
# Real SOQL the emulator does not serve: named in the refusal so nobody mistakes it for a typo.
NOT_EMULATED = frozenset(
    {
        "OR", "NOT", "LIKE", "INCLUDES", "EXCLUDES", "DESC", "NULLS", "OFFSET", "GROUP",
        "HAVING", "WITH", "USING", "FOR", "TYPEOF", "UPDATE", "TRUE", "FALSE", "NULL", "(", ")",
        "=", "!=", "<>", "<=", ">",
    }
)  # fmt: skip

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\dT:]))
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<number>\d+(?![\w.:-]))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)


class SoqlError(ApiError):
    """A query error, with the excerpt/caret/``ERROR at Row:R:Column:C`` header Salesforce adds."""

    def __init__(self, code: str, detail: str, query: str, offset: int) -> None:
        super().__init__(400, code, _located(detail, query, offset))
        self.detail = detail


def _located(detail: str, query: str, offset: int) -> str:
    offset = max(0, min(offset, len(query)))
    row = query.count("\n", 0, offset) + 1
    line_start = query.rfind("\n", 0, offset) + 1
    line_end = query.find("\n", offset)
    line = query[line_start : line_end if line_end >= 0 else len(query)]
    col = offset - line_start + 1
    # Long lines are cut to a window around the error, as the real API does.
    start = max(0, col - 1 - 40)
    excerpt = line[start : start + 80]
    return f"\n{excerpt}\n{' ' * (col - 1 - start)}^\nERROR at Row:{row}:Column:{col}\n{detail}"


@dataclass(frozen=True)
class Token:
    kind: str  # ident number datetime op punct eof, and date/string, never accepted
    text: str
    offset: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "ident" else ""


@dataclass(frozen=True)
class Path:
    """A field reference as written: ``Name``, ``Owner.Name``, ``Account__r.Owner.Email``."""

    parts: tuple[str, ...]
    offset: int

    @property
    def text(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Bound:
    """``path >= datetime`` or ``path < datetime``; ``micros`` is epoch microseconds."""

    path: Path
    op: str  # >= or <
    micros: int
    text: str
    offset: int  # of the literal


@dataclass(frozen=True)
class InList:
    """``path IN ('id', …)``: the ids (quotes removed), as the tap asks for children of parents."""

    path: Path
    values: tuple[str, ...]
    offset: int


@dataclass
class Query:
    text: str
    fields: list[Path]
    count: bool
    sobject: str
    sobject_offset: int
    where: list[Bound | InList]  # all must hold
    order: list[Path]  # ascending, nulls first (Salesforce's default for ASC)
    limit: int | None


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if m is None:
            raise _unexpected(query, query[pos], pos)
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(Token("eof", "<EOF>", len(query)))
    return tokens


def _unexpected(query: str, text: str, offset: int, kind: str = "") -> SoqlError:
    detail = f"unexpected token: '{text}'"
    if text.upper() in NOT_EMULATED or kind in ("date", "string", "number"):
        detail += " (valid SOQL, but not emulated: see emulators/README.md)"
    return SoqlError("MALFORMED_QUERY", detail, query, offset)


def parse(query: str) -> Query:
    """Parse ``query``; raises ``SoqlError`` (400 MALFORMED_QUERY) on a syntax error."""
    return _Parser(query).query()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def error(self) -> SoqlError:
        return _unexpected(self.text, self.tok.text, self.tok.offset, self.tok.kind)

    def keyword(self, word: str) -> Token:
        if self.tok.upper != word:
            raise self.error()
        return self.advance()

    def is_punct(self, char: str) -> bool:
        return self.tok.kind == "punct" and self.tok.text == char

    def path(self) -> Path:
        tok = self.tok
        if tok.kind != "ident" or tok.upper in KEYWORDS or tok.upper in NOT_EMULATED:
            raise self.error()
        self.advance()
        return Path(tuple(tok.text.split(".")), tok.offset)

    def paths(self) -> list[Path]:
        found = [self.path()]
        while self.is_punct(","):
            self.advance()
            found.append(self.path())
        return found

    def query(self) -> Query:
        self.keyword("SELECT")
        fields: list[Path] = []
        count = self.tok.upper == "COUNT" and self.tokens[self.pos + 1].text == "("
        if count:
            self.advance()
            self.advance()
            if not self.is_punct(")"):
                raise self.error()  # COUNT(field) is an aggregate the plugins never ask for
            self.advance()
        else:
            fields = self.paths()
        self.keyword("FROM")
        obj = self.tok
        if obj.kind != "ident" or obj.upper in KEYWORDS or "." in obj.text:
            raise self.error()
        self.advance()
        where: list[Bound | InList] = []
        if self.tok.upper == "WHERE":
            self.advance()
            where.append(self.bound())
            while self.tok.upper == "AND":
                self.advance()
                where.append(self.bound())
        order: list[Path] = []
        if self.tok.upper == "ORDER":
            self.advance()
            self.keyword("BY")
            order.append(self.order_item())
            while self.is_punct(","):
                self.advance()
                order.append(self.order_item())
        limit = None
        if self.tok.upper == "LIMIT":
            self.advance()
            if self.tok.kind != "number":
                raise self.error()
            limit = int(self.advance().text)
        if self.tok.kind != "eof":
            raise self.error()
        return Query(self.text, fields, count, obj.text, obj.offset, where, order, limit)

    def order_item(self) -> Path:
        path = self.path()
        if self.tok.upper == "ASC":
            self.advance()
        return path

    def bound(self) -> Bound | InList:
        path = self.path()
        if self.tok.upper == "IN":
            return self.in_list(path)
        op = self.tok
        if op.kind != "op" or op.text not in (">=", "<"):
            raise self.error()
        self.advance()
        lit = self.tok
        if lit.kind != "datetime":
            raise self.error()
        self.advance()
        return Bound(path, op.text, self.datetime_micros(lit), lit.text, lit.offset)

    def in_list(self, path: Path) -> InList:
        offset = self.advance().offset
        if not self.is_punct("("):
            raise self.error()
        self.advance()
        values = []
        while True:
            tok = self.tok
            if tok.kind != "string" or not re.fullmatch(r"'[0-9A-Za-z]{15}(?:[0-9A-Za-z]{3})?'", tok.text):
                raise self.error()  # only quoted ids are emulated
            values.append(tok.text[1:-1])
            self.advance()
            if self.is_punct(")"):
                self.advance()
                return InList(path, tuple(values), offset)
            if not self.is_punct(","):
                raise self.error()
            self.advance()

    def datetime_micros(self, tok: Token) -> int:
        """An unquoted datetime literal as epoch microseconds (fractions finer than µs dropped)."""
        m = re.fullmatch(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})", tok.text)
        if m is None:  # the tokenizer's pattern and this one agree; kept for safety
            raise _unexpected(self.text, tok.text, tok.offset)
        base, fraction, zone = m.groups()
        zone = "+00:00" if zone == "Z" else zone[:3] + ":" + zone[-2:]
        try:
            moment = datetime.fromisoformat(base + zone)
        except ValueError:
            raise _unexpected(self.text, tok.text, tok.offset) from None
        micros = int(((fraction or "") + "000000")[:6])
        return int(moment.timestamp()) * 1_000_000 + micros
