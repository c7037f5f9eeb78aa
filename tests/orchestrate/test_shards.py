"""Shards derived from the mapping, run one by one with plain `meltano run`.

See docs/operations.md "Scaling out": the same Amplitude contents as one unsharded run, a state id per shard, and a
failed shard that leaves the others alone.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators._server import Fault
from emulators.amplitude import AmplitudeEmulator
from emulators.pipeline import PROJECT_ROOT, TAP_TARGET, Emulators, meltano, sealed_environ
from emulators.postgres import LocalPostgres
from groups_mapping.validate import parse_mapping
from orchestrate.shards import (
    Shard,
    ShardError,
    meltano_executable,
    parallel_env,
    per_shard_concurrency,
    project_shards,
    shards_at_once,
    shards_of,
)
from tests.support.expected import expected_groups, sent_groups
from tests.support.project import clone_like
from tests.support.shards import MAPPING, SHARDS, canonical, mapping_env, state, write_mapping

pytestmark = pytest.mark.e2e

BASE = "demo:tap-salesforce-groups-to-target-amplitude-groups"


def test_one_shard_per_object_named_in_lower_case() -> None:
    doc = {
        "version": 1,
        "mappings": [
            *MAPPING["mappings"],
            {  # a second group type from Account: the same stream, so the same shard
                "object": "Account",
                "group_type": "account name",
                "group_name_field": "Name",
                "properties": [{"field": "Industry", "property": "sector"}],
            },
        ],
    }
    shards = shards_of(parse_mapping(doc))
    assert [s.name for s in shards] == list(SHARDS)
    account = shards[0]
    assert account.objects == ("Account",)
    assert account.state_id("prod") == "prod:tap-salesforce-groups-to-target-amplitude-groups:account"
    assert account.env(3) == {
        "TAP_SALESFORCE_GROUPS__SELECT_FILTER": '["Account"]',
        "TARGET_AMPLITUDE_GROUPS_MAX_CONCURRENCY": "3",
    }
    assert account.command("meltano", "prod") == [
        "meltano",
        "--environment=prod",
        "run",
        "--state-id-suffix=account",
        *TAP_TARGET,
    ]


def test_total_concurrency_is_divided_among_the_shards_that_run_at_once() -> None:
    assert per_shard_concurrency(total=8, parallel=4, shards=3) == 2  # 3 run at once: 2 each
    assert per_shard_concurrency(total=8, parallel=2, shards=3) == 4
    assert per_shard_concurrency(total=2, parallel=4, shards=10) == 1  # never below one ...
    # ... so no more shards run at once than the total allows (docs/operations.md: in flight =
    # shards at once times max_concurrency, at most ORCHESTRATE_AMPLITUDE_CONCURRENCY).
    for total, parallel, shards in [(2, 4, 10), (8, 16, 20), (8, 4, 3), (1, 1, 5), (5, 3, 2)]:
        at_once = min(shards_at_once(total, parallel), shards)
        assert at_once * per_shard_concurrency(total, shards_at_once(total, parallel), shards) <= total
    assert shards_at_once(total=8, parallel=16) == 8
    with pytest.raises(ShardError):
        per_shard_concurrency(total=0, parallel=1, shards=1)


def test_an_invalid_mapping_anywhere_fails_every_shard(tmp_path: Path) -> None:
    # Validation sees the whole mapping, never one shard's slice: a problem in the Contact
    # mapping is an error for the Account shard too.
    bad = {"version": 1, "mappings": [MAPPING["mappings"][0], {**MAPPING["mappings"][2], "group_type": ""}]}
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ShardError, match="missing group type"):
        project_shards(tmp_path, mapping_file="mapping.json")


def test_the_shards_check_the_mapping_with_the_projects_other_mappings(
    meltano_env: dict[str, str], tmp_path: Path
) -> None:
    # A rule checked per file is not checked: an inherited tap whose own mapping writes the same
    # property of the same group type makes every shard an error (issue 17's project check).
    project = clone_like(tmp_path / "project")
    eu = {
        "version": 1,
        "mappings": [
            {
                "object": "Lead",
                "group_type": "org id",
                "group_name_field": "Id",
                "properties": [{"field": "Company", "property": "account name"}],
            }
        ],
    }
    (project / "eu.json").write_text(json.dumps(eu))
    meltano_yml = project / "meltano.yml"
    inherited = "  - name: tap-salesforce-groups--eu\n    inherit_from: tap-salesforce-groups\n    config:\n      mapping_file: eu.json\n"
    meltano_yml.write_text(
        meltano_yml.read_text().replace("\n  loaders:\n", "\n" + inherited + "  loaders:\n", 1)
    )
    assert [s.name for s in project_shards(project, None, mapping_file="eu.json")] == ["lead"]
    with pytest.raises(ShardError, match="account name"):
        project_shards(project, None, mapping_file="demo/mapping.json")


@pytest.fixture(scope="module")
def org(meltano_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One org; an unsharded pipeline into one Amplitude, the shards into another."""
    tmp = tmp_path_factory.mktemp("shards")
    mapping = write_mapping(tmp)
    with Emulators(accounts=150, page_size=40) as emu:
        sharded_amplitude = AmplitudeEmulator(ca=emu.ca).start()
        try:
            common = {**meltano_env, **emu.env(), **mapping_env(mapping)}
            yield {
                "emu": emu,
                "mapping": mapping,
                "unsharded": {**common, "MELTANO_DATABASE_URI": f"sqlite:///{tmp / 'unsharded.db'}"},
                "sharded": {
                    **common,
                    "MELTANO_DATABASE_URI": f"sqlite:///{tmp / 'sharded.db'}",
                    "AMPLITUDE_EMULATOR_URL": sharded_amplitude.url,
                },
                "sharded_amplitude": sharded_amplitude,
            }
        finally:
            sharded_amplitude.stop()


def shards_cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`python -m orchestrate.shards --environment=demo ARGS` in the checkout, as a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "orchestrate.shards", "--environment=demo", *args],
        cwd=PROJECT_ROOT,
        env={**sealed_environ(), "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if check:
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result


def test_shards_one_by_one_equal_one_unsharded_run(org: dict[str, Any]) -> None:
    emu: Emulators = org["emu"]
    meltano("--environment=demo", "run", *TAP_TARGET, env=org["unsharded"])

    listing = shards_cli(org["sharded"], "list").stdout.splitlines()
    assert [line.split("\t") for line in listing] == [
        ["account", "Account", f"{BASE}:account"],
        ["subscription__c", "Subscription__c", f"{BASE}:subscription__c"],
        ["contact", "Contact", f"{BASE}:contact"],
    ]
    run = shards_cli(org["sharded"], "run")
    assert run.stdout.count("shard ") == 3
    # Each shard read its own object only.
    queries = [r["query"] for r in emu.salesforce.requests if r["query"] and "FROM" in r["query"]]
    assert queries

    ids = meltano("state", "list", env=org["sharded"]).stdout.split()
    assert sorted(ids) == sorted(f"{BASE}:{name}" for name in SHARDS)
    for name, stream in zip(SHARDS, ("Account", "Subscription__c", "Contact"), strict=True):
        bookmarks = state(org["sharded"], f"{BASE}:{name}")["singer_state"]["bookmarks"]
        assert list(bookmarks) == [stream]  # a shard's state holds its own stream only

    unsharded, sharded = emu.amplitude.groups(), org["sharded_amplitude"].groups()
    assert set(sharded) == {"org id", "subscription", "contact"}
    assert canonical(sharded) == canonical(unsharded)
    assert sharded == expected_groups(emu.salesforce.org, MAPPING)


def test_a_failed_shard_leaves_the_others_alone_and_its_rerun_resumes(org: dict[str, Any]) -> None:
    emu: Emulators = org["emu"]
    amplitude: AmplitudeEmulator = org["sharded_amplitude"]
    env = org["sharded"]
    sf = emu.salesforce.org
    account = sf.rows("Account", include_deleted=False)[3]["Id"]
    subscription = sf.rows("Subscription__c", include_deleted=False)[2]
    contact = sf.rows("Contact", include_deleted=False)[1]["Id"]
    sf.update("Account", account, Name="Changed while sharded")
    sf.update("Subscription__c", subscription["Id"], Plan__c="Enterprise")
    sf.update("Contact", contact, Title="CEO")
    before = {name: state(env, f"{BASE}:{name}") for name in SHARDS}

    # The Account shard fails: Amplitude refuses everything it sends.
    amplitude.faults.add(Fault(status=503, count=1000, path="/groupidentify"))
    failed = shards_cli({**env, "TARGET_AMPLITUDE_GROUPS_MAX_RETRIES": "0"}, "run", "account", check=False)
    amplitude.faults.clear()
    assert failed.returncode == 1
    assert "shards failed: account (exit 1)" in failed.stderr
    assert {name: state(env, f"{BASE}:{name}") for name in SHARDS} == before

    # The other shards run as if nothing happened, and send exactly their own changes.
    mark = len(amplitude.requests)
    shards_cli(env, "run", "subscription__c", "contact")
    assert sent_groups(amplitude, mark) == {("subscription", subscription["Name"]), ("contact", contact)}
    assert state(env, f"{BASE}:account") == before["account"]

    # The failed shard's rerun sends exactly what it could not.
    mark = len(amplitude.requests)
    shards_cli(env, "run", "account")
    assert sent_groups(amplitude, mark) == {("org id", account)}

    # And the sharded Amplitude still equals an unsharded run over the same changes.
    meltano("--environment=demo", "run", *TAP_TARGET, env=org["unsharded"])
    assert canonical(amplitude.groups()) == canonical(emu.amplitude.groups())


def test_the_salesforce_api_budget_is_shared_by_the_shards(org: dict[str, Any]) -> None:
    # The daily API budget is the org's: every shard reads the org's usage from
    # Sforce-Limit-Info, so what the other shards spent counts against this one.
    emu: Emulators = org["emu"]
    env = org["sharded"]
    sf = emu.salesforce
    shards_cli(env, "run", "account")  # up to date (already, after the tests above)
    changed = {r["Id"] for r in sf.org.rows("Account", include_deleted=False)[:100]}
    for record_id in changed:  # 100 rows to read: three pages of 40
        sf.org.update("Account", record_id, Industry="Budget test")
    shards_cli(env, "run", "subscription__c", "contact")  # the other shards spend the org's calls
    sf.api_max = sf.api_calls + 12  # a few calls left today ...
    budget = int(100 * sf.api_calls / sf.api_max)  # ... and usage already at the budget
    others = {name: state(env, f"{BASE}:{name}") for name in ("subscription__c", "contact")}
    mark = len(org["sharded_amplitude"].requests)
    stopped = shards_cli(
        {**env, "TAP_SALESFORCE_GROUPS_MAX_API_USAGE_PERCENT": str(budget)}, "run", "account", check=False
    )
    output = stopped.stdout + stopped.stderr
    assert f"at or above max_api_usage_percent={budget}" in output, output[-3000:]
    assert "state saved, the next run resumes" in output
    assert "Traceback" not in output
    first = {v for t, v in sent_groups(org["sharded_amplitude"], mark) if t == "org id"}
    assert first and first < changed  # it stopped part-way, after what it had delivered
    assert {name: state(env, f"{BASE}:{name}") for name in others} == others

    sf.api_max = 1_000_000  # the next day's budget
    mark = len(org["sharded_amplitude"].requests)
    shards_cli(env, "run", "account")
    rest = {v for t, v in sent_groups(org["sharded_amplitude"], mark) if t == "org id"}
    assert rest == changed - first  # exactly the rest: the stop lost nothing and resent nothing
    assert org["sharded_amplitude"].groups() == expected_groups(sf.org, MAPPING)


def test_shard_objects_are_what_the_shard_command_selects() -> None:
    shard = Shard("subscription__c", ("Subscription__c",))
    assert shard.env()["TAP_SALESFORCE_GROUPS__SELECT_FILTER"] == '["Subscription__c"]'


def test_429s_on_one_shard_leave_the_others_alone(
    meltano_env: dict[str, str], postgres: LocalPostgres, tmp_path: Path
) -> None:
    # Three shards at once (as Dagster runs them: each its own .meltano, state in Postgres),
    # each within its share of the total concurrency. Amplitude throttles only the Account
    # shard's requests (its URL carries ?shard=account, as a per-shard proxy route would): that
    # target backs off and retries; the others see no 429, no retry and no throttled second.
    project = clone_like(tmp_path / "project")
    mapping = write_mapping(tmp_path)
    with Emulators(accounts=600, page_size=200) as emu:
        base = {
            **sealed_environ(),
            **emu.env(),
            **mapping_env(mapping),
            "MELTANO_DATABASE_URI": postgres.uri,
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "TARGET_AMPLITUDE_GROUPS_BATCH_SIZE_ROWS": "100",
            "TARGET_AMPLITUDE_GROUPS_MAX_BACKOFF": "2",
        }
        meltano("state", "list", env=base, base_env=base)  # a new database: migrated once, first
        shards = project_shards(project, "demo", env=base)
        emu.amplitude.faults.add(
            Fault(status=429, count=4, path="?shard=account", headers={"Retry-After": "1"})
        )
        processes = {
            shard.name: subprocess.Popen(
                shard.command(meltano_executable(), "demo"),
                cwd=project,
                env={
                    **base,
                    **shard.env(per_shard_concurrency(total=6, parallel=3, shards=len(shards))),
                    **parallel_env(project, shard, base),
                    "TARGET_AMPLITUDE_GROUPS_API_URL": f"{emu.amplitude.url}/groupidentify?shard={shard.name}",
                },
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for shard in shards
        }
        outputs = {name: p.communicate(timeout=600)[0] for name, p in processes.items()}
        for name, process in processes.items():
            assert process.returncode == 0, outputs[name][-3000:]
        summaries = {name: " ".join(re.findall(r"Summary: [^\n]*", out)) for name, out in outputs.items()}
        assert re.search(r"[1-9]\d* retr(?:y|ies), [1-9][\d.]*s throttled", summaries["account"]), summaries
        for name in ("subscription__c", "contact"):
            assert ", 0 retries, 0.0s throttled," in summaries[name], summaries
        throttled = [r for r in emu.amplitude.requests if r["status"] == 429]
        assert len(throttled) == 4 and all(r["query"] == "shard=account" for r in throttled)
        assert emu.amplitude.groups() == expected_groups(emu.salesforce.org, MAPPING)
        ids = meltano("state", "list", env=base, base_env=base).stdout.split()
        assert sorted(ids) == sorted(f"{BASE}:{name}" for name in SHARDS)
