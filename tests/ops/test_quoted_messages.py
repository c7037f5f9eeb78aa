"""Every error and log line the manual quotes is one the code prints.

The README's troubleshooting table quotes what the user sees: each backtick fragment of its Symptom
column, and each fragment of four words or more of its "Cause and fix" column (shorter ones are
settings, values and commands). docs/operations.md "Logs" quotes the run's log lines: each
backtick fragment of four words or more, and each indented line.

A quote is found when it occurs in the source of the plugins (the tap, the target and the mapping
package they share), read as follows:

- ``…`` in a quote stands for any text: the quote is split on it, and its pieces must be found in
  order (each piece in the string where the one before it ended, or a later one of that file).
- The code's strings are the string literals of each module (docstrings left out; lines split
  across literals are one string, as Python joins them), and the editor's static files as they
  are. A value the code fills in (``{host}`` in an f-string, ``%s`` or ``{}``, ``${x}`` in
  JavaScript) stands for one word of the quote (``'Account'``, ``503``, ``refresh_token``), or
  for any text when a word of the code's own follows it, or for a plain string of its file
  (``how`` in ``"… through %s %d)"``). So a piece cannot hide in a value.
- A string that ends in a value may go on with a string of any source file that begins with the
  rest of the piece, after at most one word: a message that goes on with a reason built
  elsewhere (``Stopping: %s``). A string may also go on with one of the next three strings of its
  file (``text += …``).
- Text that Salesforce or another program writes into the line (FOREIGN) stands for any text, as
  ``…`` does; what Salesforce writes must be in its emulator, which answers as Salesforce does.
"""

from __future__ import annotations

import ast
import re
from functools import cache

from emulators.pipeline import PROJECT_ROOT

PACKAGES = (
    "tap-salesforce-groups/tap_salesforce_groups",
    "target-amplitude-groups/target_amplitude_groups",
    "groups-mapping/groups_mapping",
)
STATIC = (".js", ".html")
# Quoted text that someone else writes, and who: Salesforce's is checked against its emulator.
FOREIGN = {
    "invalid_grant: expired access/refresh token": "Salesforce",
    "INVALID_LOGIN: Invalid username, password, security token; or user locked out.": "Salesforce",
    "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.": "Salesforce",
    "invalid_client: invalid client credentials": "Salesforce",
    "invalid_client_id": "Salesforce",
    "Connection broken: IncompleteRead(…)": "urllib3",
    "No space left on device": "the OS (strerror)",
    "File too large": "the OS (strerror)",
    "Failed to parse JSON object from string: ''": "meltano",
    "invalid literal for int() with base 10: ''": "meltano (Python's int())",
    "meltano": "the program's name",
    "curl: (7) … Connection refused": "curl",
    "428": "the HTTP status (HTTPStatus.PRECONDITION_REQUIRED)",
}
VALUE = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[sdrfgi]|\{[^{}]*\}|\$\{[^{}]*\}")
BACKTICKS = re.compile(r"`([^`]+)`")


# -- the code's strings ----------------------------------------------------------------------------
def _parts(node: ast.expr) -> list[str | None]:
    """A string literal as its text (str) and the values filled in (None), in order."""
    pieces: list[str | None] = []
    values = node.values if isinstance(node, ast.JoinedStr) else [node]
    for value in values:
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            text = value.value
            last = 0
            for match in VALUE.finditer(text):
                pieces += [text[last : match.start()], None]
                last = match.end()
            pieces.append(text[last:])
        else:
            pieces.append(None)
    return pieces


def _segments(parts: list[str | None]) -> tuple[str, ...]:
    """The literal parts between values: ``("a ", " b")`` for ``a {x} b``; values between each."""
    segments = [""]
    for before, part in zip(["", *parts[:-1]], parts, strict=True):
        if part is None:
            if before is not None or len(segments) == 1:  # values side by side are one value
                segments.append("")
        else:
            segments[-1] += part
    return tuple(segments)


def _docstrings(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _python_strings(text: str) -> list[tuple[str, ...]]:
    tree = ast.parse(text)
    skip = _docstrings(tree)
    inner = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    nodes = [
        n
        for n in ast.walk(tree)
        if ((isinstance(n, ast.Constant) and isinstance(n.value, str)) or isinstance(n, ast.JoinedStr))
        and id(n) not in skip
        and id(n) not in inner
    ]
    nodes.sort(key=lambda n: (n.lineno, n.col_offset))
    return [_segments(_parts(n)) for n in nodes]


@cache
def sources() -> dict[str, list[tuple[str, ...]]]:
    """Each source file's strings, in the order they occur, as their literal segments."""
    found: dict[str, list[tuple[str, ...]]] = {}
    for package in PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*")):
            name = str(path.relative_to(PROJECT_ROOT))
            if path.suffix == ".py":
                found[name] = _python_strings(path.read_text(encoding="utf-8"))
            elif path.suffix in STATIC:
                text = path.read_text(encoding="utf-8")
                found[name] = [tuple(re.split(r"\$\{[^{}]*\}", text))]
    return found


@cache
def plain_strings(name: str) -> tuple[str, ...]:
    """The strings of a file with no value in them: what a value of that file may hold."""
    return tuple(s[0] for s in sources()[name] if len(s) == 1 and len(s[0]) > 1)


# -- matching ----------------------------------------------------------------------------------
# Where a piece ended: a source file, the index of one of its strings, and the place in that
# string (a literal part and an offset in it; inside a value counts as the end of the literal
# before it).
Where = tuple[str, int, int, int]
NEXT_STRINGS = 3


def _word(text: str) -> bool:
    return bool(text) and not any(c.isspace() for c in text)


def _says(text: str) -> bool:
    """Whether a literal part holds a word of the code's own (two letters at least)."""
    return re.search(r"[A-Za-z]{2}", text) is not None


def _fits(
    piece: str,
    name: str,
    index: int,
    *,
    start: tuple[int, int] = (0, 0),
    from_start: bool = False,
    go_on: int = NEXT_STRINGS,
    said: bool = False,
) -> set[Where]:
    """Where ``piece`` ends when it is part of a text the string can print; else nothing.

    The piece begins at ``start`` of the string or after it, or (``from_start``) where the
    string's text begins. A piece with a word in it must meet a word of the code's own on the
    way (``said``: one met before this string). ``go_on`` is how many more strings it may go on in.
    """
    segments = sources()[name][index]
    said = said or not _says(piece)
    memo: dict[tuple[int, int, bool], frozenset[Where]] = {}

    def done(said: bool, i: int, offset: int) -> set[Where]:
        return {(name, index, i, offset)} if said else set()

    def read_on(k: int, i: int, said: bool) -> frozenset[Where]:
        """Where ``piece[k:]`` ends, read on from the end of ``segments[i]``."""
        if (k, i, said) not in memo:
            memo[k, i, said] = frozenset()  # no loops
            memo[k, i, said] = frozenset(_read_on(k, i, said))
        return memo[k, i, said]

    def _read_on(k: int, i: int, said: bool) -> set[Where]:
        rest, here = piece[k:], len(segments[i])
        ends: set[Where] = set()
        if not rest:
            return done(said, i, here)
        if i + 1 == len(segments):  # the string ended, the piece did not
            return later(rest, said)
        literal = segments[i + 1]
        if i + 2 == len(segments) and not literal:  # the string ends in a value
            if _word(rest):
                return done(said, i, here)
            # At most one word, then one of the next strings of the file, or (when the piece
            # said something) a string of any file: the value is a reason built elsewhere.
            tails = [rest] + [rest[m:] for m in range(1, len(rest)) if _word(rest[:m])]
            ends = {end for tail in tails for end in later(tail, said)}
            if go_on and said:
                ends |= {end for tail in tails for end in goes_on(tail)}
            return ends
        lengths = set(range(1, len(rest) + 1)) if _says(literal) else set()
        lengths |= {m for m in range(1, len(rest) + 1) if _word(rest[:m])}
        lengths |= {len(text) for text in plain_strings(name) if rest.startswith(text)}
        for m in sorted(lengths):
            after = rest[m:]
            if not after:  # the piece ends inside the value: one word at most
                if _word(rest[:m]):
                    ends |= done(said, i, here)
            elif literal.startswith(after):
                ends |= done(said or _says(after), i + 1, len(after))
            elif after.startswith(literal):
                ends |= read_on(k + m + len(literal), i + 1, said or _says(literal))
        return ends

    def later(rest: str, said: bool) -> set[Where]:
        """Where ``rest`` ends, going on at the start of one of the next strings of the file."""
        if not go_on:
            return set()
        strings = range(index + 1, min(index + 1 + NEXT_STRINGS, len(sources()[name])))
        return {
            end for j in strings for end in _fits(rest, name, j, from_start=True, go_on=go_on - 1, said=said)
        }

    def from_value(i: int) -> set[Where]:
        """The piece begins inside the value before ``segments[i]``: one word, then that literal."""
        literal, ends = segments[i], set[Where]()
        if not literal:  # values side by side are one: this is the string's end
            return ends
        for m in range(1, len(piece)):
            after = piece[m:]
            if not _word(piece[:m]):
                break
            if literal.startswith(after):
                ends |= done(said or _says(after), i, len(after))
            elif after.startswith(literal):
                ends |= read_on(m + len(literal), i, said or _says(literal))
        return ends

    if from_start:
        first = segments[0]
        if not first:
            return from_value(1) if len(segments) > 1 else set()
        if first.startswith(piece):
            return done(True, 0, len(piece))
        return set(read_on(len(first), 0, said or _says(first))) if piece.startswith(first) else set()
    ends: set[Where] = set()
    for i, literal in enumerate(segments):
        if (i, len(literal)) < start:
            continue
        lowest = start[1] if i == start[0] else 0
        s = literal.find(piece, lowest)
        if s != -1:
            return {(name, index, i, s + len(piece))}
        # From inside this literal (or its very start) on: a tail of it begins the piece.
        s = literal.find(piece[0], max(lowest, len(literal) - len(piece)))
        while s != -1:
            if piece.startswith(literal[s:]):
                ends |= read_on(len(literal) - s, i, said or _says(literal[s:]))
            s = literal.find(piece[0], s + 1)
        if i > 0 and (i - 1, len(segments[i - 1])) >= start:
            ends |= from_value(i)
    return ends


@cache
def goes_on(rest: str) -> frozenset[Where]:
    """Where ``rest`` ends, in the strings of the sources that begin with it (or it with theirs)."""
    return frozenset(
        end
        for name, strings in sources().items()
        for index in range(len(strings))
        for end in _fits(rest, name, index, from_start=True, go_on=0)
    )


def found(quote: str) -> bool:
    """Whether the quote's pieces occur in the sources, each after the one before it."""
    if quote in FOREIGN:
        return True
    for text in FOREIGN:
        if " " in text:
            quote = quote.replace(text, "…")
    pieces = [p.strip() for p in quote.split("…") if p.strip()]
    cursors: set[Where] | None = None
    for piece in pieces:
        ends: set[Where] = set()
        for name, strings in sources().items():
            if cursors is None:
                for index in range(len(strings)):
                    ends |= _fits(piece, name, index)
                continue
            for _, at, i, offset in (c for c in cursors if c[0] == name):
                ends |= _fits(piece, name, at, start=(i, offset))
                for index in range(at + 1, len(strings)):
                    ends |= _fits(piece, name, index)
        if not ends:
            return False
        cursors = ends
    return True


# -- the manual's quotes ------------------------------------------------------------------------
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)  # `x`, or ``x`` holding a backtick


def _spans(text: str) -> list[str]:
    return [" ".join(m.group(2).split()) for m in CODE_SPAN.finditer(text)]


def _message(fragment: str) -> bool:
    """Four words or more (… counting as none): a message, not a setting, a value or a command."""
    return len(fragment.replace("…", " ").split()) >= 4


def _section(path: str, title: str) -> str:
    text = (PROJECT_ROOT / path).read_text(encoding="utf-8")
    return text.split(f"\n{title}\n", 1)[1].split("\n## ", 1)[0]


def troubleshooting_quotes() -> list[str]:
    quotes = []
    table = (
        _section("README.md", "## Troubleshooting") + (PROJECT_ROOT / "docs/troubleshooting.md").read_text()
    )
    for line in table.splitlines():
        if not line.startswith("| ") or line.startswith(("| Symptom", "|---")):
            continue
        symptom, fix = line[2:].split(" | ", 1)
        quotes += _spans(symptom) + [q for q in _spans(fix) if _message(q)]
    return quotes


def log_quotes() -> list[str]:
    logs = _section("docs/operations.md", "## Logs")
    quotes = [q for q in _spans(logs) if _message(q)]
    return quotes + [line.strip() for line in logs.splitlines() if line.startswith("    ") and line.strip()]


def test_the_troubleshooting_table_quotes_what_the_code_prints():
    quotes = troubleshooting_quotes()
    assert len(quotes) >= 30
    assert [q for q in quotes if not found(q)] == []


def test_the_log_lines_docs_operations_quotes_are_the_codes():
    quotes = log_quotes()
    assert len(quotes) >= 7
    assert [q for q in quotes if not found(q)] == []


def test_what_salesforce_writes_is_what_its_emulator_writes():
    emulator = "".join(p.read_text(encoding="utf-8") for p in (PROJECT_ROOT / "emulators").rglob("*.py"))
    quoted = " ".join(troubleshooting_quotes())
    theirs = [text for text, who in FOREIGN.items() if who == "Salesforce" and text in quoted]
    assert len(theirs) >= 4
    # An error code and its description are separate fields of Salesforce's answer.
    assert [text for text in theirs if not all(part in emulator for part in text.split(": "))] == []


def test_the_reading_finds_what_the_code_prints_and_only_that():
    # Values: one word at an edge, any text before a word of the code's own, a string of the file.
    assert found("Account: no field 'X' on Account")
    assert found("mapping 1: Account -> org id: stream 'Account' has no field 'X'; its fields are: …")
    assert found("Account: 200000 rows to read through Bulk API 2.0 (bulk_threshold 100000)")
    # A message going on with a reason from another module, or in the next strings (text += …).
    assert found("Stopping: Salesforce API usage is … at or above max_api_usage_percent")
    assert found("Account: 120000/200000 rows read (60%), 5100 rows/s, about 16s left")
    assert found(
        "Salesforce login (refresh_token flow) at … failed: invalid_grant: expired access/refresh token"
    )
    assert not found("Salesforce login (refresh_token flow) at … failed: invalid_grant: revoked")
    assert not found("cannot reach the Salesforce login host …")  # a value is one word at an edge
    assert not found("at or above max_api_usage_percent … Salesforce API usage is")  # out of order
    assert not found("Where the user logs in: the login host's")  # a docstring
    assert not found("SSLError: … CERTIFICATE_VERIFY_FAILED")  # Python's, which the code names otherwise
