"""A seeded, model-based convergence test of the plugin pair against the emulators.

One *history* is a sequence of steps drawn from a seed: row edits, inserts, soft deletes and
undeletes, parent renames, late commits, formula inputs, mapping edits, and runs. A run goes
through the real ``meltano run`` or through the plugins' own executables joined by a pipe (the
Singer protocol, state kept the way Meltano keeps it: the last STATE the target wrote); it may
carry a Salesforce or an Amplitude fault, be killed (SIGKILL to the whole process group, as a
crashed machine) or signalled (SIGTERM) part-way, and may see rows change while it reads
(including while a Bulk job is open).

The model is the org itself: after every run that exits 0, every mapped value of every row
(soft-deleted rows: no mapped value with ``deleted_records: unset``, the deleted flag true with
``flag``, which live rows hold false) must be what Amplitude
holds, property by property, except rows whose value changed while that run read (those must be
right after the next successful run) and formula fields between formula refreshes. A run that
starts with nothing changed since a successful run must make no Amplitude request. A run
without faults or signals must exit 0.

A failure raises :class:`ConvergenceFailure`, whose message holds the seed and the history
(every step, concrete), so ``make soak SEED=<seed>`` replays it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulators._server import Fault
from emulators.pipeline import PROJECT_ROOT, TAP_TARGET, Emulators, meltano
from emulators.salesforce import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, ApiError
from emulators.salesforce.query import compile_query
from tests.mappings import ACCOUNT_BASICS, document, group
from tests.support.project import STATE_ID, own_meltano_dir

BIN = Path(sys.executable).parent
RUN_TIMEOUT = 180.0  # a run that takes longer is a hang: a failure of its own

# Which kinds of event a history draws. Each is on once the behaviour it exercises has landed
# (see ``enabled_kinds``); "base" is what the pair has always promised.
ALL_KINDS = (
    "base",  # edits, inserts, deletes, undeletes, faults, kill -9, SIGTERM, edits during runs
    "relationships",  # parent renames: Owner.Name, Parent.Name, Account__r.Name checked
    "late_commits",  # rows committed with a SystemModstamp in the past (within lookback)
    "bulk_chunks",  # rows edited while a chunked Bulk job is read
    "formulas",  # formula inputs, and a day passing (formula_refresh_hours)
    "mapping_edits",  # properties and objects added, removed, renamed; identity changes
    "clock_skew",  # Salesforce's clock ahead of or behind ours
    "delivery",  # small batches, several requests in flight, slow answers, frequent checkpoints
    "deleted_flag",  # deleted_records: flag (deleted rows flagged, live ones flagged false)
    "null_skip",  # null_values: skip (a null leaves Amplitude's value as it was)
)
NOT_CHECKED = "<not checked: a null with null_values skip>"  # any value Amplitude holds is right

BASE_MAPPING: dict[str, Any] = document(
    group(
        "Account",
        "org id",
        "Id",
        (
            *ACCOUNT_BASICS,
            ("NumberOfEmployees", "employees"),
            ("IsActive__c", "active"),
            ("SLAExpirationDate__c", "sla expires"),
            ("Owner.Name", "owner"),
            ("Parent.Name", "parent account"),
        ),
    ),
    group(
        "Subscription__c",
        "subscription",
        "Name",
        (
            ("Plan__c", "plan"),
            ("MRR__c", "mrr"),
            ("ARR__c", "arr"),
            ("Status__c", "status"),
            ("Account__r.Name", "account name"),
        ),
    ),
)
# Fields a mapping edit may add, per object (with the property name they get).
EXTRA_FIELDS: dict[str, list[tuple[str, str]]] = {
    "Account": [
        ("NumberofLocations__c", "locations"),
        ("Health_Score__c", "health"),
        ("CustomerPriority__c", "priority"),
        ("BillingCity", "city"),
        ("Owner.Email", "owner email"),
    ],
    "Subscription__c": [
        ("Seats__c", "seats"),
        ("Renewal_Date__c", "renewal"),
        ("Owner.Name", "owner"),
    ],
    "Contact": [("Email", "email"), ("Title", "title")],
}
CONTACT_MAPPING = group("Contact", "contact", "Id", (("Name", "contact name"), ("Account.Name", "company")))
# Group name fields a mapping edit may switch to: unique on every row, so one row is one group.
UNIQUE_NAME_FIELDS: dict[str, tuple[str, ...]] = {
    "Account": ("Id", "Account_Number__c"),
    "Subscription__c": ("Name", "Id"),
    "Contact": ("Id",),
}
GROUP_TYPES = {
    "Account": ("org id", "account"),
    "Subscription__c": ("subscription", "plan"),
    "Contact": ("contact", "contact"),
}
LATE_SECONDS = 480  # late commits land at most this far back: within lookback_seconds (600)
FORMULAS_READ_AT = "formulas_read_at"  # the tap's state: when formula fields were last read in full
# Fields edits may change, per object: updateable, stamped, and safe as group values stay unique.
EDITABLE: dict[str, tuple[str, ...]] = {
    "Account": (
        "Name", "Industry", "AnnualRevenue", "NumberOfEmployees", "IsActive__c", "SLAExpirationDate__c",
        "OwnerId", "ParentId", "NumberofLocations__c", "Health_Score__c", "CustomerPriority__c",
        "BillingCity", "Description", "Rating",
    ),
    "Subscription__c": ("Plan__c", "MRR__c", "Status__c", "Account__c", "Seats__c", "Renewal_Date__c"),
    "Contact": ("FirstName", "LastName", "Email", "Title", "AccountId"),
}  # fmt: skip


class ConvergenceFailure(AssertionError):
    """Amplitude does not hold what the org holds (or a run misbehaved); says how to replay."""


def enabled_kinds() -> tuple[str, ...]:
    """The kinds whose behaviour is on this branch (see ALL_KINDS)."""
    return ALL_KINDS


# -- values -----------------------------------------------------------------------------------


def amplitude_value(value: Any, type_: str) -> Any:
    """How a stored emulator value must arrive in Amplitude (independent of the plugins' code)."""
    if value is None:
        return None
    if type_ == "datetime":  # stored as epoch milliseconds
        moment = dt.datetime.fromtimestamp(value / 1000, tz=dt.timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+00:00"
    if isinstance(value, str):
        return value[:1024]
    return value


@dataclass
class Expected:
    """What Amplitude must hold: ``{(group_type, group_value): {property: value or None}}``."""

    groups: dict[tuple[str, str], dict[str, Any]]
    rows: dict[tuple[str, str], str]  # group -> "Object/Id", for messages


def expected(
    org: Any,
    mapping: dict[str, Any],
    *,
    relationships: bool,
    formulas: bool,
    flag: str | None = None,
    skip_nulls: bool = False,
) -> Expected:
    """The org's mapped values, through the emulator's own SOQL field resolution.

    With ``flag`` (``deleted_records: flag``, that ``deleted_property``) a deleted row's group holds
    the flag true and its values are not checked (a deletion sends only the flag); a live row's
    holds its values and the flag false. The flag is named ``<object> <flag>`` when several
    objects feed one group type (README, settings). With ``skip_nulls`` (``null_values: skip``)
    a live row's null is never sent, so whatever Amplitude holds for it is right.
    """
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    rows: dict[tuple[str, str], str] = {}
    feeding: dict[str, set[str]] = {}
    for m in mapping["mappings"]:
        feeding.setdefault(m["group_type"], set()).add(m["object"].lower())
    for m in mapping["mappings"]:
        flag_name = (
            None if flag is None else flag if len(feeding[m["group_type"]]) == 1 else f"{m['object']} {flag}"
        )
        props = [(p["field"], p["property"]) for p in m["properties"]]
        fields = [m["group_name_field"], *(f for f, _ in props)]
        unique = list(dict.fromkeys(["Id", "IsDeleted", *fields]))
        compiled = compile_query(org, f"SELECT {', '.join(unique)} FROM {m['object']}")
        getters = {}
        types = {}
        for path in compiled.query.fields:
            resolved = compiled.resolve(path)
            getters[path.text] = compiled.getter(resolved)
            types[path.text] = (resolved.field.type, resolved.field.calculated, bool(resolved.chain))
        with org.lock:
            for i in compiled.run(include_deleted=True):
                name = getters[m["group_name_field"]](i)
                if name is None:
                    continue
                key = (m["group_type"], str(name))
                deleted = bool(getters["IsDeleted"](i))
                if flag_name is not None and deleted:
                    groups[key] = {flag_name: True}
                    rows[key] = f"{m['object']}/{getters['Id'](i)}"
                    continue
                values: dict[str, Any] = {} if flag_name is None else {flag_name: False}
                for f, prop in props:
                    type_, calculated, through = types[f]
                    if (through and not relationships) or (calculated and not formulas):
                        continue
                    value = None if deleted else amplitude_value(getters[f](i), type_)
                    values[prop] = NOT_CHECKED if value is None and skip_nulls and not deleted else value
                groups[key] = values
                rows[key] = f"{m['object']}/{getters['Id'](i)}"
    return Expected(groups, rows)


def differences(
    want: Expected, amplitude: dict[str, dict[str, dict[str, Any]]], skip: set[tuple[str, str]]
) -> list[str]:
    """Every property where Amplitude differs from the org (absent == null)."""
    problems = []
    for key, props in want.groups.items():
        if key in skip:
            continue
        held = amplitude.get(key[0], {}).get(key[1], {})
        for prop, value in props.items():
            if value is not NOT_CHECKED and held.get(prop) != value:
                problems.append(
                    f"{key[0]} {key[1]!r} ({want.rows[key]}) property {prop!r}: "
                    f"org {value!r}, Amplitude {held.get(prop, '<absent>')!r}"
                )
    return problems


def _hours_before(stamp: str, hours: int) -> str:
    moment = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return (moment - dt.timedelta(hours=hours)).isoformat()


def changed_keys(before: Expected, after: Expected) -> set[tuple[str, str]]:
    return {
        k for k in before.groups.keys() | after.groups.keys() if before.groups.get(k) != after.groups.get(k)
    }


# -- a history --------------------------------------------------------------------------------


@dataclass
class RunResult:
    exit_code: int | None
    output: str
    amplitude_requests: int


@dataclass
class History:
    """One seeded history against fresh emulators; ``run()`` executes it step by step."""

    seed: int
    workdir: Path
    database_uri: str
    steps: int = 12
    deadline: float | None = None  # time.monotonic() after which no new step starts
    kinds: tuple[str, ...] = field(default_factory=enabled_kinds)
    use_meltano: bool = True  # False: every run through the pipe, none interrupted (self-tests)
    log: list[str] = field(default_factory=list)
    meltano_env: dict[str, str] = field(default_factory=dict)  # for every `meltano` it starts

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.mapping = json.loads(json.dumps(BASE_MAPPING))
        self.mapping_path = self.workdir / "mapping.json"
        self.state_path = self.workdir / "state.json"
        self.suffix = f"h{self.seed}"
        self.state: dict[str, Any] = {}
        self.meltano_in_sync = True  # Meltano's stored state equals self.state
        self.dirty = True  # the org or the mapping changed since the last successful run
        self.runs = self.successes = self.quiet_checks = self.checks = 0
        self.formula_refresh_due = False
        self.mapping_changed = False  # the next run goes through `meltano run`
        self.rotate = self.rng.random() < 0.5
        self.delivery: dict[str, int] = {}  # the target's delivery settings (the "delivery" kind)
        self.deleted_records = "unset"  # or "flag" (the "deleted_flag" kind)
        self.null_values = "unset"  # or "skip" (the "null_skip" kind)
        if "formulas" in self.kinds:  # a formula that follows the parent account
            subscription = next(m for m in self.mapping["mappings"] if m["object"] == "Subscription__c")
            subscription["properties"].append({"field": "Account_Rating__c", "property": "account rating"})
        # After a kill -9, Meltano's run record stays "running" until its heartbeat is 5 minutes
        # stale, and a new run of the same job refuses to start before that. A scheduled run
        # comes later than that; here `meltano run` says --force until then instead of waiting.
        self.stale_until = 0.0
        self.started = time.monotonic()

    # -- bookkeeping ---------------------------------------------------------------------------
    def note(self, text: str) -> None:
        self.log.append(f"{len(self.log) + 1:3d}. [{time.monotonic() - self.started:5.1f}s] {text}")

    def fail(self, reason: str) -> ConvergenceFailure:
        history = "\n".join(self.log)
        return ConvergenceFailure(
            f"convergence failed (seed {self.seed}; replay: make soak SEED={self.seed}): {reason}\n"
            f"history (kinds {', '.join(self.kinds)}; refresh token rotation "
            f"{'on' if self.rotate else 'off'}):\n{history}"
        )

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_mapping()
        accounts = self.rng.randrange(60, 160)
        with Emulators(
            accounts=accounts, seed=self.rng.randrange(1, 1000), page_size=self.rng.choice((25, 60, 500))
        ) as emu:
            self.emu = emu
            emu.salesforce.rotate_refresh_tokens = self.rotate
            emu.salesforce.bulk.delay = 0.2  # polls happen, so rows can change while a job is open
            emu.salesforce.bulk.pk_chunk_rows = self.rng.choice((20, 50, 100_000))
            skew = self.rng.choice((0, 0, -90, 45, 240)) if "clock_skew" in self.kinds else 0
            if skew:
                emu.salesforce.org.clock_offset_ms = skew * 1000  # Salesforce's clock against ours
            self.note(
                f"org: {accounts} accounts; rotation {'on' if self.rotate else 'off'}; "
                f"Bulk chunks of {emu.salesforce.bulk.pk_chunk_rows} rows; Salesforce clock {skew:+d}s"
            )
            if "delivery" in self.kinds:
                self._draw_delivery()
            if "deleted_flag" in self.kinds and self.rng.random() < 0.4:
                self.deleted_records = "flag"
                self.note("deleted_records: flag")
            if "null_skip" in self.kinds and self.rng.random() < 0.3:
                self.null_values = "skip"
                self.note("null_values: skip")
            self.step_run(first=True)
            for _ in range(self.steps):
                if self.deadline is not None and time.monotonic() > self.deadline:
                    break
                self.step()
            self.step_run(clean=True)  # the history ends with a clean run: it must converge

    def _draw_delivery(self) -> None:
        """How the target delivers in this history, and how slowly Amplitude answers.

        Small batches and slow answers put several batches' requests in flight at once, so
        checkpoints are taken while later requests are still out: a kill, a signal or a fault
        then lands between a STATE and the acknowledgement it waits for.
        """
        rng = self.rng
        choices = {
            "batch_size_rows": rng.choice((None, None, 7, 25, 60)),
            "max_concurrency": rng.choice((None, 1, 3, 8, 16)),
            "state_interval_seconds": rng.choice((None, None, 1)),
        }
        self.delivery = {k: v for k, v in choices.items() if v is not None}
        seconds, jitter = rng.choice(((0.0, 0.0), (0.005, 0.005), (0.03, 0.02)))
        self.emu.amplitude.set_latency(seconds, jitter)
        # Sometimes a rate limit that throttles most runs: 429s all along, concurrency halving
        # and growing back while checkpoints, kills and faults land.
        rate = rng.choice((None, None, None, 400))
        self.emu.amplitude.set_rate_limit(rate, 100 if rate else None)
        if rate:
            self.delivery["max_retries"] = 20  # throttling is not a fault: a clean run must still pass
        chosen = ", ".join(f"{k} {v}" for k, v in self.delivery.items()) or "default settings"
        self.note(
            f"delivery: {chosen}; Amplitude answers in {seconds * 1000:.0f}±{jitter * 1000:.0f} ms"
            + (f", throttles above {rate} groups/s" if rate else "")
        )

    def step(self) -> None:
        choices: list[tuple[Callable[[], None], float]] = [
            (self.step_run, 3.0),
            (self.step_two_runs, 1.0),
            (self.step_edit, 3.0),
            (self.step_insert, 1.0),
            (self.step_delete, 1.0),
            (self.step_undelete, 0.7),
        ]
        if "relationships" in self.kinds:
            choices.append((self.step_rename_parent, 1.5))
        if "late_commits" in self.kinds:
            choices.append((self.step_late_commit, 1.5))
        if "formulas" in self.kinds:
            choices.append((self.step_day_passes, 0.7))
        if "mapping_edits" in self.kinds:
            choices.append((self.step_mapping_edit, 1.2))
        actions, weights = zip(*choices, strict=True)
        self.rng.choices(actions, weights)[0]()

    # -- org changes ----------------------------------------------------------------------------
    @property
    def org(self) -> Any:
        return self.emu.salesforce.org

    def objects(self) -> list[str]:
        return [m["object"] for m in self.mapping["mappings"]]

    def _pick(self, obj: str, *, deleted: bool = False) -> str | None:
        rows = [
            r["Id"] for r in self.org.rows(obj, include_deleted=True) if bool(r.get("IsDeleted")) == deleted
        ]
        return self.rng.choice(rows) if rows else None

    def _value(self, obj: str, name: str) -> Any:
        """A fresh value for a field, of its type (never one it held: ``n`` grows)."""
        f = next(f for f in self.org.describe(obj)["fields"] if f["name"] == name)
        n = self.rng.randrange(1, 10**6)
        kind = f["type"]
        if kind == "picklist":
            return self.rng.choice([p["value"] for p in f["picklistValues"]])
        if kind in ("currency", "double", "percent"):  # within the field's precision and scale
            scale = int(f.get("scale") or 0)
            top = 10 ** min(9, max(1, int(f.get("precision") or 18) - scale)) - 1
            return round(self.rng.uniform(0, top), scale)
        if kind == "int":
            return n
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "date":
            return (dt.date(2020, 1, 1) + dt.timedelta(days=n % 3000)).isoformat()
        if kind == "reference":
            target = f["referenceTo"][0] if f["referenceTo"] != ["Group", "User"] else "User"
            if target == "User":
                return self.rng.choice([r["Id"] for r in self.org.rows("User")])
            return self._pick(target)
        if kind == "email":
            return f"person{n}@example.com"
        return f"{name} {n} ü"[: f.get("length") or 255]

    def _edit_values(self, obj: str) -> dict[str, Any]:
        names = self.rng.sample(EDITABLE[obj], k=self.rng.randint(1, 3))
        return {name: self._value(obj, name) for name in names}

    def _plan_edit(self) -> tuple[str, str, dict[str, Any]] | None:
        obj = self.rng.choice([o for o in self.objects() if o in EDITABLE])
        record_id = self._pick(obj)
        return None if record_id is None else (obj, record_id, self._edit_values(obj))

    def _apply_edit(self, plan: tuple[str, str, dict[str, Any]], when: str = "") -> None:
        obj, record_id, values = plan
        try:
            self.org.update(obj, record_id, **values)
        except ApiError as exc:  # e.g. deleted meanwhile: Salesforce refuses the update too
            self.note(f"edit {obj}/{record_id} {values}{when}: refused ({exc})")
            return
        self.dirty = True
        self.note(f"edit {obj}/{record_id} {values}{when}")

    def step_edit(self) -> None:
        plan = self._plan_edit()
        if plan is not None:
            self._apply_edit(plan)

    def step_insert(self) -> None:
        obj = self.rng.choice([o for o in self.objects() if o in ("Account", "Subscription__c", "Contact")])
        values = {k: v for k, v in self._edit_values(obj).items() if v is not None}
        if obj == "Account":
            values.setdefault("Name", f"New account {self.rng.randrange(10**6)}")
        if obj == "Contact":
            values.setdefault("LastName", f"Newperson {self.rng.randrange(10**6)}")
        record_id = self.org.insert(obj, values)
        self.dirty = True
        self.note(f"insert {obj}/{record_id} {values}")

    def step_delete(self) -> None:
        obj = self.rng.choice(self.objects())
        record_id = self._pick(obj)
        if record_id is not None:
            self.org.soft_delete(obj, record_id)
            self.dirty = True
            self.note(f"soft delete {obj}/{record_id}")

    def step_undelete(self) -> None:
        obj = self.rng.choice(self.objects())
        record_id = self._pick(obj, deleted=True)
        if record_id is not None:
            self.org.undelete(obj, record_id)
            self.dirty = True
            self.note(f"undelete {obj}/{record_id}")

    def step_rename_parent(self) -> None:
        """A user renamed: Owner.Name changes on every row they own, no child is stamped."""
        user = self.rng.choice(self.org.rows("User"))
        values = {"FirstName": f"Renamed{self.rng.randrange(10**6)}", "LastName": user["LastName"]}
        self.org.update("User", user["Id"], **values)
        self.dirty = True
        self.note(f"rename user {user['Id']} {values}")

    def step_late_commit(self) -> None:
        """A transaction that started up to LATE_SECONDS ago commits now, with its old stamp."""
        plan = self._plan_edit()
        if plan is None:
            return
        obj, record_id, values = plan
        ago = self.rng.randrange(1, LATE_SECONDS)
        try:
            self.org.update_at(self.org.now() - ago * 1000, obj, record_id, **values)
        except ApiError as exc:
            self.note(f"late commit {obj}/{record_id}: refused ({exc})")
            return
        self.dirty = True
        self.note(f"late commit {obj}/{record_id} {values}, stamped {ago}s in the past")

    def step_day_passes(self) -> None:
        """A day passes for formula fields.

        Every stream's last formula read moves 25 h back, so the next run is due to read them again (and must
        leave every formula value fresh).
        """
        moved = []
        for name, slot in (self.state.get("bookmarks") or {}).items():
            read_at = slot.get(FORMULAS_READ_AT) if isinstance(slot, dict) else None
            if read_at:
                slot[FORMULAS_READ_AT] = _hours_before(str(read_at), 25)
                moved.append(name)
        self.meltano_in_sync = False
        self.formula_refresh_due = bool(moved)
        self.dirty = True
        self.note(f"a day passes (formula reads of {', '.join(moved) or 'no stream yet'} moved back 25 h)")

    def step_mapping_edit(self) -> None:
        """Edit the mapping file as a user (or the editor) would.

        The next run goes through `meltano run`, which must pick the change up at once and backfill what it
        adds.
        """
        rng = self.rng
        mappings = self.mapping["mappings"]
        m = rng.choice(mappings)
        obj = m["object"]
        mapped = {p["field"] for p in m["properties"]}
        unused = [(f, prop) for f, prop in EXTRA_FIELDS.get(obj, []) if f not in mapped]
        edits = ["remove property", "rename property", "group type", "group name field"]
        edits += ["add property"] * 3 if unused else []
        if not any(x["object"] == "Contact" for x in mappings):
            edits += ["add object"] * 2
        edit = rng.choice(edits)
        if edit == "add property":
            f, prop = rng.choice(unused)
            m["properties"].append({"field": f, "property": prop})
            text = f"{obj}: add {f} as {prop!r}"
        elif edit == "remove property" and len(m["properties"]) > 1:
            gone = m["properties"].pop(rng.randrange(len(m["properties"])))
            text = f"{obj}: remove {gone['field']} ({gone['property']!r}; Amplitude keeps its last values)"
        elif edit == "rename property":
            p = rng.choice(m["properties"])
            old, p["property"] = p["property"], f"{p['property']} v{rng.randrange(100, 999)}"
            text = f"{obj}: property {old!r} renamed {p['property']!r}"
        elif edit == "group type":
            # Two names per object at most: Amplitude keeps the old groups, and a project holds
            # five group types (a sixth is dropped silently).
            old = m["group_type"]
            m["group_type"] = GROUP_TYPES[obj][1] if old == GROUP_TYPES[obj][0] else GROUP_TYPES[obj][0]
            text = f"{obj}: group type {old!r} -> {m['group_type']!r} (the old groups stay in Amplitude)"
        elif edit == "group name field":
            choices = [f for f in UNIQUE_NAME_FIELDS[obj] if f != m["group_name_field"]]
            if not choices:
                return
            old, m["group_name_field"] = m["group_name_field"], rng.choice(choices)
            text = (
                f"{obj}: group name field {old} -> {m['group_name_field']} (the old groups stay in Amplitude)"
            )
        elif edit == "add object":
            mappings.append(json.loads(json.dumps(CONTACT_MAPPING)))
            text = "add a mapping: Contact -> 'contact'"
        else:
            return
        self._write_mapping()
        self.mapping_changed = True
        self.dirty = True
        self.note(f"mapping edit: {text}")

    def _write_mapping(self) -> None:
        self.mapping_path.write_text(json.dumps(self.mapping, indent=2))

    # -- runs -----------------------------------------------------------------------------------
    def _sf_fault(self) -> Fault | None:
        return self.rng.choice(
            [
                None,
                Fault(status=503, count=2, path="/services/data", after=self.rng.randrange(0, 6)),
                Fault(kind="expire_session", after=self.rng.randrange(0, 6)),
                Fault(kind="expire_cursor", after=self.rng.randrange(0, 3)),
                Fault(kind="query_timeout", after=self.rng.randrange(0, 3)),
                Fault(kind="bulk_job_failed", after=self.rng.randrange(0, 3)),
                Fault(kind="request_limit", after=self.rng.randrange(0, 8)),
                Fault(kind="disconnect", after=self.rng.randrange(0, 8)),
                Fault(status=500, count=100, path="/services/data", after=self.rng.randrange(2, 8)),
            ]
        )

    def _amplitude_fault(self) -> Fault | None:
        return self.rng.choice(
            [
                None,
                Fault(status=429, count=2, headers={"Retry-After": "1"}, after=self.rng.randrange(0, 3)),
                Fault(status=503, count=2, after=self.rng.randrange(0, 3)),
                Fault(kind="body_429", status=200, count=1, after=self.rng.randrange(0, 3)),
                Fault(kind="disconnect", count=1, after=self.rng.randrange(0, 3)),
                Fault(status=503, count=1000, after=self.rng.randrange(0, 3)),
            ]
        )

    def step_run(self, *, first: bool = False, clean: bool = False, calm: bool = False) -> None:
        """One run; ``clean``: no fault, signal or edit, through `meltano run`; ``calm``.

        No signal and no edit while it reads (faults still drawn).
        """
        rng = self.rng
        interrupt = None if clean or first or calm else rng.choice((None, None, None, "SIGTERM", "SIGKILL"))
        # `meltano run` for every interruption and after mapping edits; the faster pipe otherwise.
        runner = (
            "meltano"
            if interrupt or first or clean or self.mapping_changed or rng.random() < 0.25
            else "pipe"
        )
        if not self.use_meltano:
            runner, interrupt = "pipe", None
        api_type = rng.choice(("rest", "bulk", "auto"))
        sf_fault = None if clean else self._sf_fault()
        amp_fault = None if clean else self._amplitude_fault()
        during = (
            []
            if clean or calm
            else [p for p in (self._plan_edit() for _ in range(rng.choice((0, 0, 1, 2)))) if p]
        )
        triggers = [rng.choice(("request", "bulk")) + f":{rng.randrange(1, 6)}" for _ in during]
        delay = round(rng.uniform(0.5, 8.0), 1)
        quiet = not self.dirty
        self.runs += 1
        self.note(
            f"run #{self.runs} via {runner}, api_type {api_type}"
            + (f", Salesforce fault {_fault_text(sf_fault)}" if sf_fault else "")
            + (f", Amplitude fault {_fault_text(amp_fault)}" if amp_fault else "")
            + (f", {interrupt} after {delay}s" if interrupt else "")
            + (f", {len(during)} edit(s) while it reads" if during else "")
            + (" (nothing changed since the last success)" if quiet else "")
        )
        want_before = self._expected()
        if sf_fault:
            self.emu.salesforce.faults.add(sf_fault)
        if amp_fault:
            self.emu.amplitude.faults.add(amp_fault)
        self.emu.salesforce.clear_requests()
        editor = _DuringRun(self, list(zip(during, triggers, strict=True)))
        try:
            with editor:
                if runner == "meltano":
                    result = self._run_meltano(api_type, interrupt, delay)
                else:
                    result = self._run_pipe(api_type)
        finally:
            self.emu.salesforce.faults.clear()
            self.emu.amplitude.faults.clear()
        ok = result.exit_code == 0
        if runner == "meltano" and ok:
            self.mapping_changed = False
        self.note(
            f"  -> exit {result.exit_code}, {result.amplitude_requests} Amplitude request(s)"
            + ("" if ok else f"; last line: {_last_line(result.output)}")
        )
        if "Traceback (most recent call last)" in result.output:
            at = result.output.index("Traceback (most recent call last)")
            self.note("  traceback in the output:\n" + result.output[max(0, at - 600) : at + 3000])
        if not ok and not (sf_fault or amp_fault or interrupt):
            raise self.fail(
                f"run #{self.runs} had no fault and no signal, yet exited {result.exit_code}:\n{result.output[-4000:]}"
            )
        if not ok:
            self.dirty = True
            return
        self.successes += 1
        if quiet and not editor.applied:
            self.quiet_checks += 1
            if result.amplitude_requests:
                raise self.fail(
                    f"run #{self.runs}: nothing changed, yet {result.amplitude_requests} Amplitude request(s)"
                )
        rejected = self.workdir / "rejected.jsonl"
        if rejected.exists() and rejected.read_text().strip():
            raise self.fail(f"run #{self.runs}: Amplitude rejected groups:\n{rejected.read_text()[:2000]}")
        want_after = self._expected()
        skip = changed_keys(want_before, want_after)
        problems = differences(want_after, self.emu.amplitude.groups(), skip)
        self.checks += 1
        if problems:
            shown = "\n  ".join(problems[:25])
            raise self.fail(
                f"after run #{self.runs} (exit 0) Amplitude differs from the org in {len(problems)} "
                f"propert{'y' if len(problems) == 1 else 'ies'} ({len(skip)} group(s) changed while it read, not checked):\n  {shown}"
            )
        self.dirty = bool(editor.applied)
        if self.formula_refresh_due:
            self.formula_refresh_due = False

    def step_two_runs(self) -> None:
        """Two runs back to back: after a success, the second must make no Amplitude request."""
        self.step_run(calm=True)
        self.step_run(calm=True)

    def _expected(self) -> Expected:
        return expected(
            self.org,
            self.mapping,
            relationships="relationships" in self.kinds,
            formulas="formulas" in self.kinds and self.formula_refresh_due,
            flag="deleted" if self.deleted_records == "flag" else None,
            skip_nulls=self.null_values == "skip",
        )

    # -- the two ways to run the pair -------------------------------------------------------------
    def settings(self, api_type: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The tap's and the target's settings for this run (the same both ways)."""
        tap = {
            "login_url": self.emu.salesforce.url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": REFRESH_TOKEN,
            "refresh_token_file": str(self.workdir / "refresh-token.json"),
            "mapping_file": str(self.mapping_path),
            "api_type": api_type,
            "bulk_threshold": 50,  # auto: Bulk for the larger objects, REST for the small
            "max_retries": 3,
            "max_backoff": 1,
            "request_timeout": 20,
        }
        target = {
            "api_url": f"{self.emu.amplitude.url}/groupidentify",
            "api_key": "emulator-api-key",
            "mapping_file": str(self.mapping_path),
            "deleted_records": self.deleted_records,
            "null_values": self.null_values,
            "max_retries": 3,
            "max_backoff": 1,
            "request_timeout": 20,
            "rejected_file": str(self.workdir / "rejected.jsonl"),
            **self.delivery,
        }
        return tap, target

    def _run_pipe(self, api_type: str) -> RunResult:
        tap_config, target_config = self.settings(api_type)
        target_config["validate_records"] = False  # as meltano.yml sets it
        (self.workdir / "tap.json").write_text(json.dumps(tap_config))
        (self.workdir / "target.json").write_text(json.dumps(target_config))
        self.state_path.write_text(json.dumps(self.state))
        before = self.emu.amplitude.metrics()["requests"]
        env = {**os.environ, "REQUESTS_CA_BUNDLE": str(self.emu.ca.ca_path)}
        env.pop("MELTANO_PROJECT_ROOT", None)
        tap_log = (self.workdir / "tap.log").open("w")
        target_log = (self.workdir / "target.log").open("w")
        with tap_log, target_log:
            tap = subprocess.Popen(
                [str(BIN / TAP_TARGET[0]), "--config", "tap.json", "--state", "state.json"],
                cwd=self.workdir, env=env, stdout=subprocess.PIPE, stderr=tap_log,
            )  # fmt: skip
            target = subprocess.Popen(
                [str(BIN / TAP_TARGET[1]), "--config", "target.json"],
                cwd=self.workdir, env=env, stdin=tap.stdout, stdout=subprocess.PIPE, stderr=target_log, text=True,
            )  # fmt: skip
            assert tap.stdout is not None
            tap.stdout.close()  # the target holds the read end
            try:
                out, _ = target.communicate(timeout=RUN_TIMEOUT)
                tap.wait(timeout=30)
            except subprocess.TimeoutExpired:
                tap.kill()
                target.kill()
                raise self.fail(f"run #{self.runs} (pipe) still running after {RUN_TIMEOUT:.0f}s") from None
        states = [line for line in out.splitlines() if line.strip()]
        if states:
            self.state = json.loads(states[-1])  # Meltano keeps every STATE; the last one wins
            self.meltano_in_sync = False
        output = (self.workdir / "tap.log").read_text() + (self.workdir / "target.log").read_text()
        code = tap.returncode or target.returncode
        return RunResult(code, output, self.emu.amplitude.metrics()["requests"] - before)

    def _meltano_env(self, api_type: str) -> dict[str, str]:
        tap, target = self.settings(api_type)
        env = {**self.meltano_env, **self.emu.env(), "MELTANO_DATABASE_URI": self.database_uri}
        env.update({f"TAP_SALESFORCE_GROUPS_{k.upper()}": str(v) for k, v in tap.items()})
        env.update({f"TARGET_AMPLITUDE_GROUPS_{k.upper()}": str(v) for k, v in target.items()})
        return env

    def _run_meltano(self, api_type: str, interrupt: str | None, delay: float) -> RunResult:
        env = self._meltano_env(api_type)
        state_id = f"{STATE_ID}:{self.suffix}"
        if not self.meltano_in_sync:
            meltano("--environment=demo", "state", "set", "--force", state_id,
                    json.dumps({"singer_state": self.state}), env=env)  # fmt: skip
        before = self.emu.amplitude.metrics()["requests"]
        force = ["--force"] if time.monotonic() < self.stale_until else []
        args = ["--environment=demo", "run", *force, f"--state-id-suffix={self.suffix}", *TAP_TARGET]
        process = subprocess.Popen(
            [str(BIN / "meltano"), *args],
            cwd=PROJECT_ROOT,
            env={**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: a kill -9 takes the plugins too
        )
        timer = None
        if interrupt:
            sig = signal.SIGTERM if interrupt == "SIGTERM" else signal.SIGKILL
            timer = threading.Timer(delay, _signal_group, (process, sig))
            timer.start()
        try:
            output, _ = process.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            output, _ = process.communicate()
            raise self.fail(
                f"run #{self.runs} (meltano) still running after {RUN_TIMEOUT:.0f}s:\n{output[-3000:]}"
            ) from None
        finally:
            if timer is not None:
                timer.cancel()
        if process.returncode is not None and process.returncode < 0:  # died by the signal itself
            self.stale_until = time.monotonic() + 330
        if interrupt == "SIGKILL":
            _signal_group(process, signal.SIGKILL)  # anything the group left behind
        got = meltano("--environment=demo", "state", "get", state_id, env=env, check=False)
        text = got.stdout.strip()
        self.state = (json.loads(text).get("singer_state") or {}) if got.returncode == 0 and text else {}
        self.meltano_in_sync = True
        return RunResult(process.returncode, output, self.emu.amplitude.metrics()["requests"] - before)


class _DuringRun:
    """Applies planned edits while a run reads.

    After the n-th Salesforce request, or after the n-th Bulk job was created ("bulk"), i.e. while its rows
    are being rendered and read.
    """

    def __init__(self, history: History, plans: list[tuple[tuple[str, str, dict[str, Any]], str]]) -> None:
        self.history = history
        self.plans = plans
        self.applied = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> _DuringRun:
        if self.plans:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.plans:
            self._thread.join()

    def _reached(self, trigger: str) -> bool:
        kind, _, n = trigger.partition(":")
        log = self.history.emu.salesforce.requests
        if kind == "bulk":
            log = [r for r in log if r["method"] == "POST" and r["path"].rstrip("/").endswith("/jobs/query")]
        return len(log) >= int(n)

    def _watch(self) -> None:
        pending = list(self.plans)
        while pending:
            plan, trigger = pending[0]
            if self._reached(trigger):
                self.history._apply_edit(plan, f" (while run #{self.history.runs} reads, {trigger})")
                self.applied += 1
                pending.pop(0)
                continue
            if self._stop.is_set():  # the run ended first: the edit lands before the next run
                self.history._apply_edit(
                    plan, f" (after run #{self.history.runs} ended, {trigger} not reached)"
                )
                self.applied += 1
                pending.pop(0)
                continue
            time.sleep(0.02)


def _signal_group(process: subprocess.Popen[str], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _fault_text(fault: Fault) -> str:
    parts = [f"{k}={v!r}" for k, v in (("kind", fault.kind), ("status", fault.status)) if v is not None]
    parts += [f"count={fault.count}", f"after={fault.after}"]
    if fault.path:
        parts.append(f"path={fault.path!r}")
    return "(" + ", ".join(parts) + ")"


def _last_line(output: str) -> str:
    """The first and the last error line of a run's output (else its last line)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "stopping" in line.lower()]
    if len(errors) > 1:
        return f"{errors[0][-250:]} ... {errors[-1][-250:]}"
    return (errors or lines or ["<no output>"])[-1][-300:]


# -- many histories -----------------------------------------------------------------------------


@dataclass
class Summary:
    histories: int = 0
    runs: int = 0
    successes: int = 0
    checks: int = 0
    quiet_checks: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        return (
            f"convergence: {self.histories} histories, {self.runs} runs ({self.successes} exited 0, each "
            f"checked: {self.checks}; {self.quiet_checks} unchanged-org runs made 0 Amplitude requests) "
            f"in {self.seconds:.0f}s"
        )


@contextlib.contextmanager
def _workspace() -> Iterator[tuple[Path, str, dict[str, str]]]:
    """A folder, a system database and a `.meltano` of the soak's own (other runs may go on beside it)."""
    with tempfile.TemporaryDirectory(prefix="convergence-") as tmp:
        root = Path(tmp)
        database = f"sqlite:///{root / 'meltano.db'}"
        meltano("install", env={"MELTANO_DATABASE_URI": database})
        yield root, database, own_meltano_dir(root / "meltano-sys")


def soak(
    *,
    seconds: float,
    seed: int | None = None,
    steps: int = 12,
    out: Callable[[str], None] = print,
    verbose: bool = False,
) -> Summary:
    """Histories one after another until ``seconds`` have passed (at least one), or the one of ``seed``.

    Raises :class:`ConvergenceFailure` on the first that fails.
    """
    summary = Summary()
    start = time.monotonic()
    master = random.Random(seed if seed is not None else time.time_ns())
    with _workspace() as (root, database, meltano_env):
        while True:
            history_seed = seed if seed is not None else master.randrange(10**9)
            deadline = start + seconds
            history = History(
                history_seed,
                root / f"h{history_seed}",
                database,
                steps=steps,
                deadline=deadline,
                meltano_env=meltano_env,
            )
            out(f"history seed {history_seed} (kinds: {', '.join(history.kinds)})")
            try:
                history.run()
            finally:
                summary.histories += 1
                summary.runs += history.runs
                summary.successes += history.successes
                summary.checks += history.checks
                summary.quiet_checks += history.quiet_checks
                summary.seconds = time.monotonic() - start
            if verbose:
                out("\n".join(history.log))
            if seed is not None or time.monotonic() >= deadline:
                return summary
