"""The tap's test settings (against the session's Salesforce emulator) and an in-process run."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from emulators.salesforce import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN
from tap_salesforce_groups import settings as tap_settings
from tap_salesforce_groups.tap import TapSalesforceGroups
from tests.mappings import ACCOUNT_PROPERTIES, document, group
from tests.support.emulators import SESSION, Session

MAPPING = document(
    group(
        "Account",
        "org id",
        "Id",
        (
            *ACCOUNT_PROPERTIES,
            ("NumberOfEmployees", "employees"),
            ("Parent.Name", "parent"),
            ("BillingCity", "billing city"),
        ),
    ),
    group(
        "Subscription__c",
        "subscription",
        "Name",
        (("Plan__c", "plan"), ("MRR__c", "mrr"), ("Account__r.Name", "account")),
    ),
)

CONFIG: dict[str, Any] = {
    "login_url": "https://127.0.0.1:9",  # the emulator's, set when it starts (below)
    "client_id": CLIENT_ID,
    "client_secret": CLIENT_SECRET,
    "refresh_token": REFRESH_TOKEN,
    "mapping": MAPPING,
    "max_retries": 3,
    "max_backoff": 0,
}


def _fill(session: Session) -> None:
    assert session.salesforce is not None
    CONFIG["login_url"] = session.salesforce.url


SESSION.when_started(_fill)


def settings(**overrides: object) -> dict[str, Any]:
    """CONFIG with overrides, and every default filled in as the tap fills them."""
    config = {k: v for k, v in {**CONFIG, **overrides}.items() if v is not None}
    return tap_settings.resolve(config)


@dataclass
class TapRun:
    records: dict[str, list[dict]] = field(default_factory=dict)
    states: list[dict] = field(default_factory=list)
    schemas: dict[str, dict] = field(default_factory=dict)
    exit_code: int = 0
    stopped_reason: str | None = None

    @property
    def state(self) -> dict:
        return self.states[-1]


def by_id(records: dict[str, list[dict]]) -> dict[str, dict[str, dict]]:
    """Records per stream keyed by Id (else Name): Bulk rows come in no promised order."""
    return {stream: {str(r.get("Id", r.get("Name"))): r for r in rows} for stream, rows in records.items()}


def same_records(a: dict[str, list[dict]], b: dict[str, list[dict]]) -> bool:
    """Byte-identical records (key order included), in any order: Bulk rows come unsorted."""

    def dump(records: dict[str, list[dict]]) -> dict[str, list[str]]:
        return {stream: sorted(json.dumps(r) for r in rows) for stream, rows in records.items()}

    return dump(a) == dump(b)


def run_tap(
    capsys: pytest.CaptureFixture[str],
    state: dict | None = None,
    *,
    catalog: dict | None = None,
    **config: object,
) -> TapRun:
    """Sync in-process (with ``catalog``, as Meltano runs it); parse the Singer messages written to stdout."""
    capsys.readouterr()
    tap = TapSalesforceGroups(config={**CONFIG, **config}, state=state or {}, catalog=catalog)
    tap.sync_all()
    run = TapRun(exit_code=tap.run.exit_code, stopped_reason=tap.run.stopped_reason)
    for line in capsys.readouterr().out.splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD":
            run.records.setdefault(message["stream"], []).append(message["record"])
        elif message["type"] == "STATE":
            run.states.append(message["value"])
        elif message["type"] == "SCHEMA":
            run.schemas[message["stream"]] = message
    return run
