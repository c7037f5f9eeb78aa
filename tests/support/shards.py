"""What the shard and Dagster tests share: a three-object mapping, its environment, state, contents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emulators.pipeline import meltano
from tests.mappings import ACCOUNT_BASICS, document, group

# Three objects, so three shards; Account is the big one (the one the tests stop part-way).
MAPPING: dict[str, Any] = document(
    group(
        "Account",
        "org id",
        "Id",
        (*ACCOUNT_BASICS, ("Owner.Name", "owner")),
    ),
    group("Subscription__c", "subscription", "Name", (("Plan__c", "plan"), ("MRR__c", "mrr"))),
    group("Contact", "contact", "Id", (("Email", "email"), ("Title", "title"))),
)
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
