"""Golden request bodies: the same Singer input gives byte-identical /groupidentify bodies.

Guards every performance change to the target (message reading, timestamp handling, building
identifications, JSON and form encoding, packing) against changing what Amplitude receives.
The input covers unicode (BMP, astral, combining, controls, form-reserved characters), strings
around the 1024-character cut, every type (integers past 2**53, floats, booleans, dates,
date-times with and without an offset), nulls under both ``null_values`` modes, deleted rows
under each ``deleted_records`` mode, a mapping and the generic (no mapping) mode, and enough
groups that packing splits on each of the three limits and carries a tail across batches.

The target runs in-process on the input and posts over real HTTPS to an Amplitude emulator that
also keeps each raw body. ``tests/fixtures/golden_bodies.json.gz`` holds the bodies the code
produced when the test was written (sorted: requests go out concurrently). To accept a change
in the bodies on purpose, run ``GOLDEN_REGENERATE=1 .venv/bin/python -m pytest
tests/unit/test_golden_bodies.py`` and commit the fixture with the reason.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from emulators.amplitude import API_KEY, AmplitudeEmulator
from target_amplitude_groups.target import TargetAmplitudeGroups
from tests.mappings import document, group
from tests.support.emulators import CA

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "golden_bodies.json.gz"
REGENERATE = os.environ.get("GOLDEN_REGENERATE") == "1"


class RecordingAmplitude(AmplitudeEmulator):
    """The Amplitude emulator, also keeping every /groupidentify body exactly as received."""

    def __init__(self) -> None:
        super().__init__(ca=CA, keep_payloads=False)
        self.bodies: list[bytes] = []
        self._bodies_lock = threading.Lock()

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO") == "/groupidentify":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            with self._bodies_lock:
                self.bodies.append(body)
            environ["wsgi.input"] = io.BytesIO(body)
        return super()._wsgi(environ, start_response)


@pytest.fixture(scope="module")
def recorder() -> Iterator[RecordingAmplitude]:
    server = RecordingAmplitude()
    server.start()
    yield server
    server.stop()


# -- the input -----------------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "Id": {"type": ["string", "null"]},
        "Name": {"type": ["string", "null"]},
        "Description": {"type": ["string", "null"]},
        "NumberOfEmployees": {"type": ["integer", "null"]},
        "AnnualRevenue": {"type": ["number", "null"]},
        "IsActive__c": {"type": ["boolean", "null"]},
        "SLAExpirationDate__c": {"type": ["string", "null"], "format": "date"},
        "CreatedDate": {"type": ["string", "null"], "format": "date-time"},
        "SystemModstamp": {"type": ["string", "null"], "format": "date-time"},
        "Owner.Name": {"type": ["string", "null"]},
        "IsDeleted": {"type": ["boolean", "null"]},
    },
}
WIDE_SCHEMA = {
    "type": "object",
    "properties": {
        "Key": {"type": ["integer", "null"]},
        **{f"F{i:02d}": {"type": ["string", "null"]} for i in range(40)},
    },
}
NOTES_SCHEMA = {
    "type": "object",
    "properties": {
        "Key": {"type": ["string", "null"]},
        **{f"N{i:03d}": {"type": ["string", "null"]} for i in range(100)},
    },
}
TINY_SCHEMA = {
    "type": "object",
    "properties": {"Key": {"type": ["integer", "null"]}, "Flag": {"type": ["boolean", "null"]}},
}

STRINGS = [
    "plain ascii",
    "",
    " leading and trailing spaces ",
    "form & reserved = chars + % / ? # ; : @ $ , [ ] { } ~ * ' ( ) !",
    'quotes " and \\ backslash',
    "new\nline\ttab\rreturn\x00nul\x01\x1f\x7f",
    "Ünïcödé BMP: ß é ñ 中文 日本語 한국어 Ελληνικά Русский",
    "right-to-left: שלום مرحبا",
    "astral: 😀 🎉 \U0001d538\U0001d539 🏳️‍🌈 👩🏽‍💻",
    "combining: e\u0301 a\u0308 Z\u0324\u0354\u0367\u0311\u0313",
    "zero width: a\u200bb\u200dc\ufeffd",
    "line separators \u2028 \u2029 and \u0085",
    "x" * 1023,
    "y" * 1024,
    "z" * 1025,
    "long ascii " + "0123456789" * 150,
    "😀" * 1100,  # astral: cut at 1024 code points
    "e\u0301" * 700,  # combining: the cut may fall between a letter and its accent
    "中" * 2000,
]
LONG_STRINGS = [s for s in STRINGS if len(s) > 1000]
INTEGERS = [0, 1, -1, 2**31, 2**53, 2**53 + 1, -(2**53) - 1, 2**63 - 1, -(2**63), 10**30]
FLOATS = [
    "0.0",
    "-0.0",
    "1.5",
    "0.1",
    "123.0",
    "1e-07",
    "1e21",
    "1.7976931348623157e308",
    "-2.5E-3",
    "3.14159265358979",
]
DATES = ["2024-02-29", "1970-01-01", "9999-12-31", "0001-01-01"]
DATETIMES = [
    "2025-05-20T20:49:32.000+00:00",
    "2025-05-20T20:49:32Z",
    "2025-05-20T20:49:32.123456+00:00",
    "2025-05-20T20:49:32+05:30",
    "2025-05-20T20:49:32.5-08:00",
    "2025-05-20T20:49:32",  # no offset: the target reads it as UTC
    "2025-05-20T20:49:32.999",
    "2025-05-20",
    "1999-12-31T23:59:59.999+00:00",
]


def _pick(values: list[Any], i: int, step: int) -> Any:
    return values[(i * step) % len(values)]


def account(i: int) -> dict[str, Any]:
    """A varied Account row; every 7th field value is null and some keys are absent."""
    row: dict[str, Any] = {
        "Id": f"001{i:015d}" if i % 97 else f"ünï-{i}-😀",
        "Name": f"Account {i} " + _pick(STRINGS, i, 1)[:80],
        "Description": _pick(STRINGS, i, 5) if i % 3 == 0 else f"d{i}",
        "NumberOfEmployees": _pick(INTEGERS, i, 3),
        "AnnualRevenue": _pick(FLOATS, i, 7),  # a raw JSON number, spliced in below
        "IsActive__c": i % 2 == 0,
        "SLAExpirationDate__c": _pick(DATES, i, 1),
        "CreatedDate": _pick(DATETIMES, i, 1),
        "SystemModstamp": f"2025-06-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00.000+00:00",
        "Owner.Name": _pick(STRINGS, i, 11)[:200],
        "IsDeleted": i % 13 == 0,
    }
    for n, key in enumerate(list(row)[1:-1]):
        if (i + n) % 7 == 0:
            row[key] = None
    if i % 17 == 0:
        del row["Owner.Name"]  # absent, not null: left alone
    if i % 211 == 0:
        row["Id"] = None  # no group value: skipped
    if i % 223 == 0:
        row["Id"] = "   "  # blank group value: skipped
    if i % 59 == 0:
        row["Id"] = f"001{i - 1:015d}"  # the same group again: the later row wins
    return row


def wide(i: int) -> dict[str, Any]:
    """A row of 40 string fields, so requests split on the 1024-property limit."""
    row: dict[str, Any] = {"Key": i}
    for f in range(40):
        row[f"F{f:02d}"] = None if (i + f) % 11 == 0 else f"w{i}-{f}" + ("é" if f % 5 == 0 else "")
    return row


def notes(i: int) -> dict[str, Any]:
    """Long unicode values, so requests split on the byte limit.

    Row 7 alone exceeds one request (100 values of about 12 kB encoded), so it goes as partial updates.
    """
    row: dict[str, Any] = {"Key": f"note-{i}"}
    for f in range(100):
        row[f"N{f:03d}"] = (
            "😀" * 1100 if i == 7 else LONG_STRINGS[(i + f) % len(LONG_STRINGS)] if f < 12 else None
        )
    return row


def record_line(stream: str, row: dict[str, Any]) -> str:
    """A RECORD line; AnnualRevenue goes in as the raw JSON number text (exactly as a tap writes it)."""
    revenue = row.get("AnnualRevenue")
    data = {k: v for k, v in row.items() if k != "AnnualRevenue"}
    text = json.dumps({"type": "RECORD", "stream": stream, "record": data}, ensure_ascii=False)
    if "AnnualRevenue" in row:
        raw = "null" if revenue is None else revenue
        text = text[:-2] + f', "AnnualRevenue": {raw}' + "}}"
    return text + "\n"


def singer_input() -> str:
    lines = [
        json.dumps({"type": "SCHEMA", "stream": "Account", "schema": SCHEMA, "key_properties": ["Id"]}),
        json.dumps({"type": "SCHEMA", "stream": "Wide", "schema": WIDE_SCHEMA, "key_properties": ["Key"]}),
        json.dumps({"type": "SCHEMA", "stream": "Notes", "schema": NOTES_SCHEMA, "key_properties": ["Key"]}),
        json.dumps({"type": "SCHEMA", "stream": "Tiny", "schema": TINY_SCHEMA, "key_properties": ["Key"]}),
    ]
    text = "\n".join(lines) + "\n"
    parts = [text]
    for i in range(1, 2601):
        parts.append(record_line("Account", account(i)))
        if i % 5 == 0:
            parts.append(record_line("Wide", wide(i // 5)))
        if i % 41 == 0:
            parts.append(record_line("Notes", notes(i // 41)))
    for i in range(2100):
        parts.append(record_line("Tiny", {"Key": i, "Flag": i % 3 == 0}))
    state = {"bookmarks": {"Account": {"replication_key_value": "2025-06-28T23:59:00.000+00:00"}}}
    parts.append(json.dumps({"type": "STATE", "value": state}) + "\n")
    return "".join(parts)


MAPPING = document(
    group(
        "Account",
        "org id",
        "Id",
        (
            ("Name", "account name"),
            ("Description", "description ✓"),
            ("NumberOfEmployees", "employees"),
            ("AnnualRevenue", "revenue"),
            ("IsActive__c", "active"),
            ("SLAExpirationDate__c", "sla date"),
            ("CreatedDate", "created"),
            ("Owner.Name", "owner"),
        ),
    ),
    group("Account", "account name", "Name", (("Id", "account id"),)),
    group("Wide", "wide", "Key", tuple((f"F{i:02d}", f"f{i:02d}") for i in range(40))),
    group("Notes", "notes", "Key", tuple((f"N{i:03d}", f"n{i:03d}") for i in range(100))),
    group("Tiny", "tiny", "Key", (("Flag", "flag"),)),
)

# Each configuration is one run of the target over the same input.
CONFIGS: dict[str, dict[str, Any]] = {
    "unset-ignore": {"null_values": "unset", "deleted_records": "ignore"},
    "unset-unset": {"null_values": "unset", "deleted_records": "unset"},
    "unset-flag": {"null_values": "unset", "deleted_records": "flag"},
    "skip-ignore": {"null_values": "skip", "deleted_records": "ignore"},
    "skip-unset": {"null_values": "skip", "deleted_records": "unset"},
    "skip-flag": {"null_values": "skip", "deleted_records": "flag"},
    "small-batches": {"batch_size_rows": 700},  # tails carried across batch boundaries
    "generic": {"mapping": None},  # no mapping: stream = group type, key = group value
}


def run_config(recorder: RecordingAmplitude, name: str, lines: str) -> list[bytes]:
    """The bodies one run of the target posted, sorted (they go out concurrently)."""
    recorder.reset()
    recorder.bodies.clear()
    extra = dict(CONFIGS[name])
    mapping = extra.pop("mapping", MAPPING)
    config = {
        "api_key": API_KEY,
        "api_url": f"{recorder.url}/groupidentify",
        "max_backoff": 0,
        **({"mapping": mapping} if mapping is not None else {}),
        **extra,
    }
    target = TargetAmplitudeGroups(config=config, validate_config=True)
    target.listen(io.StringIO(lines))
    assert recorder.metrics()["rejected"] == 0
    return sorted(recorder.bodies)


FULL = "unset-ignore"  # the configuration whose bodies are stored whole, for readable diffs


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    if REGENERATE or not FIXTURE.exists():
        return {}
    with gzip.open(FIXTURE, "rt", encoding="ascii") as handle:
        return json.load(handle)  # type: ignore[no-any-return]


_produced: dict[str, list[str]] = {}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_request_bodies_are_byte_identical(
    recorder: RecordingAmplitude, golden: dict[str, Any], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bodies = run_config(recorder, name, singer_input())
    capsys.readouterr()  # the target's STATE lines
    assert bodies, "the target sent nothing"
    texts = [b.decode("ascii") for b in bodies]
    if REGENERATE:
        _produced[name] = texts
        if len(_produced) == len(CONFIGS):
            FIXTURE.parent.mkdir(parents=True, exist_ok=True)
            stored = {
                "bodies": {FULL: _produced[FULL]},
                "sha256": {k: [sha256(t) for t in v] for k, v in sorted(_produced.items())},
            }
            with gzip.GzipFile(FIXTURE, "wb", mtime=0) as handle:
                handle.write(json.dumps(stored, indent=0, sort_keys=True).encode("ascii"))
        return
    assert name in golden["sha256"], (
        f"{FIXTURE} has no bodies for '{name}'; regenerate it (see the docstring)"
    )
    hashes: list[str] = golden["sha256"][name]
    assert len(texts) == len(hashes), f"{name}: {len(texts)} requests, golden has {len(hashes)}"
    expected: list[str] = golden["bodies"].get(name, [])
    for index, (got, want) in enumerate(zip(texts, expected)):
        if got != want:
            at = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b) if len(got) == len(want) else 0
            got_ids = parse_qs(got)["identification"][0]
            want_ids = parse_qs(want)["identification"][0]
            pytest.fail(
                f"{name}: body {index} differs at byte {at} (lengths {len(got)} / {len(want)}); "
                f"decoded near there: {got_ids[max(0, at // 3 - 80) : at // 3 + 80]!r} vs "
                f"{want_ids[max(0, at // 3 - 80) : at // 3 + 80]!r}"
            )
    changed = [i for i, (got, want) in enumerate(zip(texts, hashes)) if sha256(got) != want]
    assert not changed, f"{name}: bodies {changed} (sorted) differ from the golden ones (sha256)"


def test_the_input_exercises_every_limit_and_case(golden: dict[str, Any]) -> None:
    """The golden bodies split on each limit, so packing is really covered (not a timing test)."""
    if REGENERATE or not golden:
        pytest.skip("no golden file yet")
    counts = []
    for body in golden["bodies"][FULL]:
        idents = json.loads(parse_qs(body)["identification"][0])
        props = sum(len(ops) for i in idents for ops in i["group_properties"].values())
        counts.append((len(idents), props, len(body)))
    assert any(n == 1024 for n, _, _ in counts), "no request was cut at 1024 identifications"
    assert any(p > 1000 and n < 1024 for n, p, _ in counts), "no request was cut by the property limit"
    assert any(size > 900_000 and p < 1000 for _, p, size in counts), "no request was cut by the byte limit"
    decoded = "".join(parse_qs(b)["identification"][0] for b in golden["bodies"][FULL])
    for needle in (
        '"$unset"',
        "😀",
        "e\u0301",
        "9007199254740993",
        "1000000000000000000000",
        "1e-07",
        "+00:00",
        "中",
    ):
        assert needle in decoded, needle
