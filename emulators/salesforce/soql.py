"""A SOQL parser for the subset the emulator serves, with Salesforce's error messages.

Grammar (keywords case-insensitive, any whitespace between tokens)::

    SELECT (COUNT() | COUNT(path) [alias] | path {, path}) FROM Object [alias]
        [WHERE cond] [ORDER BY path [ASC|DESC] [NULLS FIRST|LAST] {, ...}]
        [LIMIT n] [OFFSET n]
    cond := term {AND term} | term {OR term}      -- mixing AND and OR needs parentheses
    term := NOT term | ( cond ) | path op literal | path [NOT] IN (literal, ...)
          | path LIKE 'pattern' | path INCLUDES|EXCLUDES ('a;b', ...)

Literals: quoted strings with backslash escapes, numbers, true/false, null, dates
(``2025-01-31``) and unquoted datetimes (``2025-01-31T00:00:00Z``, with optional fraction of
any length and ``Z``, ``+hhmm`` or ``+hh:mm``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from .errors import ApiError

KEYWORDS = frozenset(
    {
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "INCLUDES", "EXCLUDES",
        "ORDER", "BY", "ASC", "DESC", "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "TRUE",
        "FALSE", "NULL", "GROUP", "HAVING", "WITH", "USING", "FOR", "TYPEOF", "UPDATE",
    }
)  # fmt: skip

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\dT:]))
  | (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)

_ESCAPES = {
    "n": "\n", "N": "\n", "r": "\r", "R": "\r", "t": "\t", "T": "\t", "b": "\b", "B": "\b",
    "f": "\f", "F": "\f", '"': '"', "'": "'", "\\": "\\",
}  # fmt: skip


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
    kind: str  # ident string number date datetime op punct eof
    text: str
    offset: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "ident" else ""


@dataclass(frozen=True)
class Path:
    """A field reference as written: ``Name``, ``Owner.Name``, ``Parent.Owner.Email``."""

    parts: tuple[str, ...]
    offset: int

    @property
    def text(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Literal:
    kind: str  # string number date datetime boolean null
    value: Any  # str | int | float | bool | None; datetimes as epoch microseconds
    offset: int
    text: str


@dataclass(frozen=True)
class Comparison:
    path: Path
    op: str  # = != < <= > >= LIKE IN NOT IN INCLUDES EXCLUDES
    value: Literal | tuple[Literal, ...]
    offset: int


@dataclass(frozen=True)
class Logic:
    op: str  # AND | OR
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition = Comparison | Logic | Not


@dataclass(frozen=True)
class OrderItem:
    path: Path
    desc: bool
    nulls_first: bool


@dataclass(frozen=True)
class Count:
    """``COUNT()`` (``path`` None) or the aggregate ``COUNT(path)``."""

    path: Path | None
    alias: str | None
    offset: int


@dataclass
class Query:
    text: str
    fields: list[Path]
    count: Count | None
    sobject: str
    sobject_offset: int
    alias: str | None
    where: Condition | None
    order: list[OrderItem]
    limit: int | None
    offset: int | None


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if m is None:
            if query[pos] == "'":
                raise SoqlError("MALFORMED_QUERY", "mismatched character '<EOF>' expecting \"'\"", query, pos)
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{query[pos]}'", query, pos)
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(Token("eof", "<EOF>", len(query)))
    return tokens


def parse(query: str) -> Query:
    """Parse ``query``; raises ``SoqlError`` (400 MALFORMED_QUERY) on a syntax error."""
    return _Parser(query).query()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0

    # -- token helpers --------------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def error(self, tok: Token | None = None) -> SoqlError:
        tok = tok or self.tok
        return SoqlError("MALFORMED_QUERY", f"unexpected token: '{tok.text}'", self.text, tok.offset)

    def at_keyword(self, *words: str) -> bool:
        return self.tok.upper in words

    def keyword(self, word: str) -> Token:
        if self.tok.upper != word:
            raise self.error()
        return self.advance()

    def punct(self, char: str) -> Token:
        if self.tok.kind != "punct" or self.tok.text != char:
            raise self.error()
        return self.advance()

    def is_punct(self, char: str) -> bool:
        return self.tok.kind == "punct" and self.tok.text == char

    def path(self) -> Path:
        tok = self.tok
        if tok.kind != "ident" or tok.upper in KEYWORDS:
            raise self.error()
        self.advance()
        return Path(tuple(tok.text.split(".")), tok.offset)

    def integer(self) -> int:
        tok = self.tok
        if tok.kind != "number" or not tok.text.isdigit():
            raise self.error()
        self.advance()
        return int(tok.text)

    # -- grammar --------------------------------------------------------------------------------
    def query(self) -> Query:
        self.keyword("SELECT")
        fields: list[Path] = []
        count: Count | None = None
        if self.tok.upper == "COUNT" and self.tokens[self.pos + 1].text == "(":
            count = self.count()
        else:
            fields.append(self.path())
            while self.is_punct(","):
                self.advance()
                fields.append(self.path())
        self.keyword("FROM")
        obj = self.tok
        if obj.kind != "ident" or obj.upper in KEYWORDS or "." in obj.text:
            raise self.error()
        self.advance()
        alias = None
        if self.tok.kind == "ident" and self.tok.upper not in KEYWORDS:
            alias = self.advance().text
        where = None
        if self.at_keyword("WHERE"):
            self.advance()
            where = self.condition()
        order: list[OrderItem] = []
        if self.at_keyword("ORDER"):
            self.advance()
            self.keyword("BY")
            order.append(self.order_item())
            while self.is_punct(","):
                self.advance()
                order.append(self.order_item())
        limit = offset = None
        if self.at_keyword("LIMIT"):
            self.advance()
            limit = self.integer()
        if self.at_keyword("OFFSET"):
            self.advance()
            offset = self.integer()
        if self.tok.kind != "eof":
            raise self.error()
        return Query(self.text, fields, count, obj.text, obj.offset, alias, where, order, limit, offset)

    def count(self) -> Count:
        start = self.advance()
        self.punct("(")
        path = None if self.is_punct(")") else self.path()
        self.punct(")")
        alias = None
        if path is not None and self.tok.kind == "ident" and self.tok.upper not in KEYWORDS:
            alias = self.advance().text
        if self.is_punct(","):
            # COUNT() must stand alone; other fields would need GROUP BY.
            raise self.error()
        return Count(path, alias, start.offset)

    def order_item(self) -> OrderItem:
        path = self.path()
        desc = False
        if self.at_keyword("ASC", "DESC"):
            desc = self.advance().upper == "DESC"
        nulls_first = not desc  # Salesforce's default: nulls first ascending, last descending
        if self.at_keyword("NULLS"):
            self.advance()
            if not self.at_keyword("FIRST", "LAST"):
                raise self.error()
            nulls_first = self.advance().upper == "FIRST"
        return OrderItem(path, desc, nulls_first)

    def condition(self) -> Condition:
        items = [self.term()]
        op = None
        while self.at_keyword("AND", "OR"):
            word = self.tok.upper
            if op is not None and word != op:
                raise self.error()  # `a AND b OR c` is ambiguous in SOQL: parentheses required
            op = word
            self.advance()
            items.append(self.term())
        return items[0] if op is None else Logic(op, tuple(items))

    def term(self) -> Condition:
        if self.at_keyword("NOT"):
            self.advance()
            return Not(self.term())
        if self.is_punct("("):
            self.advance()
            inner = self.condition()
            self.punct(")")
            return inner
        path = self.path()
        tok = self.tok
        if tok.kind == "op":
            self.advance()
            op = "!=" if tok.text == "<>" else tok.text
            return Comparison(path, op, self.literal(), tok.offset)
        word = tok.upper
        if word == "NOT":
            self.advance()
            self.keyword("IN")
            return Comparison(path, "NOT IN", self.literal_list(), tok.offset)
        if word in ("IN", "INCLUDES", "EXCLUDES"):
            self.advance()
            return Comparison(path, word, self.literal_list(), tok.offset)
        if word == "LIKE":
            self.advance()
            value = self.literal()
            if value.kind != "string":
                raise self.error(Token("x", value.text, value.offset))
            return Comparison(path, "LIKE", value, tok.offset)
        raise self.error()

    def literal_list(self) -> tuple[Literal, ...]:
        self.punct("(")
        if self.at_keyword("SELECT"):
            raise SoqlError(
                "MALFORMED_QUERY",
                "semi-join sub-selects are not supported by this emulator",
                self.text,
                self.tok.offset,
            )
        values = [self.literal()]
        while self.is_punct(","):
            self.advance()
            values.append(self.literal())
        self.punct(")")
        return tuple(values)

    def literal(self) -> Literal:
        tok = self.tok
        kind = tok.kind
        if kind == "string":
            self.advance()
            return Literal("string", self.unescape(tok), tok.offset, tok.text)
        if kind == "number":
            self.advance()
            value: Any = float(tok.text) if "." in tok.text else int(tok.text)
            return Literal("number", value, tok.offset, tok.text)
        if kind == "date":
            self.advance()
            try:
                date.fromisoformat(tok.text)
            except ValueError:
                raise self.error(tok) from None
            return Literal("date", tok.text, tok.offset, tok.text)
        if kind == "datetime":
            self.advance()
            return Literal("datetime", self.datetime_micros(tok), tok.offset, tok.text)
        word = tok.upper
        if word in ("TRUE", "FALSE"):
            self.advance()
            return Literal("boolean", word == "TRUE", tok.offset, tok.text)
        if word == "NULL":
            self.advance()
            return Literal("null", None, tok.offset, tok.text)
        raise self.error()

    def unescape(self, tok: Token) -> str:
        body = tok.text[1:-1]
        out: list[str] = []
        k = 0
        while k < len(body):
            c = body[k]
            if c != "\\":
                out.append(c)
                k += 1
                continue
            nxt = body[k + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
            elif nxt in "_%":
                out.append("\\" + nxt)  # kept escaped: only LIKE gives these a meaning
            else:
                raise SoqlError(
                    "MALFORMED_QUERY",
                    f"Invalid string literal '{body}'. Illegal character sequence '\\{nxt}' "
                    "in string literal.",
                    self.text,
                    tok.offset,
                )
            k += 2
        return "".join(out)

    def datetime_micros(self, tok: Token) -> int:
        """An unquoted datetime literal as epoch microseconds (fractions finer than µs dropped)."""
        m = re.fullmatch(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})", tok.text)
        if m is None:  # the tokenizer's pattern and this one agree; kept for safety
            raise self.error(tok)
        base, fraction, zone = m.groups()
        zone = "+00:00" if zone == "Z" else zone[:3] + ":" + zone[-2:]
        try:
            moment = datetime.fromisoformat(base + zone)
        except ValueError:
            raise self.error(tok) from None
        micros = int(((fraction or "") + "000000")[:6])
        seconds = int(moment.timestamp())
        return seconds * 1_000_000 + micros
