"""Shared parts of the shard and Dagster tests: a three-object mapping, its org, state and Postgres."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators.pipeline import meltano
from emulators.postgres import LocalPostgres, PostgresUnavailable

# Three objects, so three shards; Account is the big one (the one the tests stop part-way).
MAPPING: dict[str, Any] = {
    "version": 1,
    "mappings": [
        {
            "object": "Account",
            "group_type": "org id",
            "group_name_field": "Id",
            "properties": [
                {"field": "Name", "property": "account name"},
                {"field": "Industry", "property": "industry"},
                {"field": "AnnualRevenue", "property": "annual revenue"},
                {"field": "Owner.Name", "property": "owner"},
            ],
        },
        {
            "object": "Subscription__c",
            "group_type": "subscription",
            "group_name_field": "Name",
            "properties": [
                {"field": "Plan__c", "property": "plan"},
                {"field": "MRR__c", "property": "mrr"},
            ],
        },
        {
            "object": "Contact",
            "group_type": "contact",
            "group_name_field": "Id",
            "properties": [
                {"field": "Email", "property": "email"},
                {"field": "Title", "property": "title"},
            ],
        },
    ],
}
SHARDS = ("account", "subscription__c", "contact")


def write_mapping(directory: Path) -> Path:
    path = directory / "mapping.json"
    path.write_text(json.dumps(MAPPING, indent=2), encoding="utf-8")
    return path


def mapping_env(path: Path) -> dict[str, str]:
    """Both plugins read the three-object mapping (the demo environment's own is two objects)."""
    return {
        "TAP_SALESFORCE_GROUPS_MAPPING_FILE": str(path),
        "TARGET_AMPLITUDE_GROUPS_MAPPING_FILE": str(path),
        "TARGET_AMPLITUDE_GROUPS_DELETED_RECORDS": "unset",
    }


def state(env: dict[str, str], state_id: str) -> dict[str, Any]:
    result = meltano("state", "get", state_id, env=env, check=False)
    return json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else {}


def canonical(groups: dict[str, Any]) -> bytes:
    """Amplitude's contents as bytes: what "byte-identical" compares."""
    return json.dumps(groups, sort_keys=True, ensure_ascii=False).encode()


@pytest.fixture(scope="session")
def meltano_installed() -> None:
    """The plugins are installed in the checkout (the e2e tests run the checkout's project)."""
    meltano("install", env={"MELTANO_DATABASE_URI": "sqlite:///:memory:"})


@pytest.fixture
def postgres() -> Iterator[LocalPostgres]:
    """A Debian PostgreSQL server of the test's own: Meltano's system database for shards."""
    try:
        server = LocalPostgres().start()
    except PostgresUnavailable as exc:
        pytest.skip(f"no PostgreSQL server for this test: {exc}")
    try:
        yield server
    finally:
        server.stop()
