"""tap-salesforce-groups against the Salesforce emulator, over real HTTPS."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from emulators._server import Fault
from tap_salesforce_groups.errors import SalesforceAuthError
from tap_salesforce_groups.streams import iso_datetime, parse_datetime
from tap_salesforce_groups.tap import TapSalesforceGroups
from tests.support.emulators import SESSION
from tests.support.tap import CONFIG, run_tap

# The SDK lists the streams when it builds the class (now): the emulators must be up.
SESSION.start()
TestStandardTap = get_tap_test_class(
    TapSalesforceGroups, config=CONFIG, suite_config=SuiteConfig(max_records_limit=50)
)


def queries(salesforce):
    return [r["query"] for r in salesforce.requests if r.get("query")]


def test_discovery_types_fields_from_describe(salesforce):
    tap = TapSalesforceGroups(config=CONFIG)
    catalog = tap.catalog_dict
    streams = {s["tap_stream_id"]: s for s in catalog["streams"]}
    assert set(streams) == {"Account", "Subscription__c"}
    account = streams["Account"]
    props = account["schema"]["properties"]
    assert account["key_properties"] == ["Id"]
    assert account["replication_key"] == "SystemModstamp"
    assert props["AnnualRevenue"]["type"] == ["number", "null"]
    assert props["NumberOfEmployees"]["type"] == ["integer", "null"]
    assert props["IsActive__c"]["type"] == ["boolean", "null"]
    assert props["SLAExpirationDate__c"]["format"] == "date"
    assert props["CreatedDate"]["format"] == "date-time"
    assert props["Owner.Name"]["type"] == ["string", "null"]
    assert props["BillingCity"]["type"] == ["string", "null"]
    assert set(props) == {
        "Id",
        "Name",
        "AnnualRevenue",
        "NumberOfEmployees",
        "IsActive__c",
        "CreatedDate",
        "SLAExpirationDate__c",
        "Owner.Name",
        "Parent.Name",
        "BillingCity",
        "SystemModstamp",
        "IsDeleted",
    }
    assert streams["Subscription__c"]["key_properties"] == ["Name"]
    # only the mapped objects are described, plus the targets of relationship paths
    described = {r["path"].split("/")[-2] for r in salesforce.requests if r["path"].endswith("/describe")}
    assert described <= {"Account", "Subscription__c", "User"}


def test_full_sync_emits_flat_records_of_mapped_fields_only(salesforce, capsys):
    run = run_tap(capsys)
    accounts = run.records["Account"]
    rows = {r["Id"]: r for r in salesforce.org.rows("Account")}  # queryAll: deleted rows too
    assert len(accounts) == len(rows)
    users = {u["Id"]: u for u in salesforce.org.rows("User")}
    for record in accounts:
        row = rows[record["Id"]]
        assert record["Name"] == row["Name"]
        assert record["Owner.Name"] == (users[row["OwnerId"]]["Name"] if row["OwnerId"] else None)
        assert record["Parent.Name"] == (rows[row["ParentId"]]["Name"] if row["ParentId"] else None)
        assert record["SystemModstamp"].endswith("+00:00")
    soql = [q for q in queries(salesforce) if "FROM Account" in q and "COUNT()" not in q]
    assert soql == [
        "SELECT Id, Name, AnnualRevenue, IsActive__c, CreatedDate, SLAExpirationDate__c, Owner.Name, "
        "NumberOfEmployees, Parent.Name, BillingCity, SystemModstamp, IsDeleted, "
        # the parents' stamps: what the next run's relationship passes already have (not emitted)
        "Owner.SystemModstamp, Parent.SystemModstamp FROM Account ORDER BY SystemModstamp ASC, Id ASC"
    ]
    assert len(run.records["Subscription__c"]) == len(salesforce.org.rows("Subscription__c"))
    assert run.state["bookmarks"]["Account"]["replication_key_value"] == accounts[-1]["SystemModstamp"]


def test_incremental_run_sends_exactly_the_changed_rows(salesforce, capsys):
    first = run_tap(capsys)
    unchanged = run_tap(capsys, state=first.state)
    # Many rows share the bookmark's timestamp; none of them is sent again.
    assert unchanged.records == {}
    ids = [r["Id"] for r in salesforce.org.rows("Account", include_deleted=False)]
    salesforce.org.update("Account", ids[3], Name="Changed")
    salesforce.org.soft_delete("Account", ids[4])
    new_id = salesforce.org.insert("Account", {"Name": "New"})
    second = run_tap(capsys, state=unchanged.state)
    assert sorted(r["Id"] for r in second.records["Account"]) == sorted([ids[3], ids[4], new_id])
    deleted = next(r for r in second.records["Account"] if r["Id"] == ids[4])
    assert deleted["IsDeleted"] is True
    assert "Subscription__c" not in second.records


def test_an_interrupted_run_resumes_inside_a_burst_of_equal_timestamps(salesforce, capsys):
    full = run_tap(capsys).records["Account"]
    # Take the state as it stood after the 150th record: its timestamp is shared with others.
    cut = 150
    stamp = full[cut - 1]["SystemModstamp"]
    floor = (parse_datetime(stamp) - timedelta(seconds=600)).isoformat(timespec="milliseconds")
    emitted = {r["Id"]: r["SystemModstamp"] for r in full[:cut] if r["SystemModstamp"] >= floor}
    state = {
        "bookmarks": {
            "Account": {
                "replication_key": "SystemModstamp",
                "replication_key_value": stamp,
                "emitted": emitted,
                # as the interrupted full read started it: parents changed since then
                "relationships": {
                    "Parent": {"replication_key_value": datetime.now(timezone.utc).isoformat()}
                },
            }
        }
    }
    resumed = run_tap(capsys, state=state).records["Account"]
    assert [r["Id"] for r in resumed] == [r["Id"] for r in full[cut:]]
    # A state written before lookback (Ids at the bookmark only) resumes the same way when
    # nothing is to be read back; then, having no bookmark for Parent yet, the accounts whose
    # parent changed since that bookmark are read again.
    done_at_stamp = [r["Id"] for r in full[:cut] if r["SystemModstamp"] == stamp]
    legacy = {"bookmarks": {"Account": {"replication_key_value": stamp, "ids_at_bookmark": done_at_stamp}}}
    resumed = run_tap(capsys, state=legacy, lookback_seconds=0).records["Account"]
    assert [r["Id"] for r in resumed[: len(full) - cut]] == [r["Id"] for r in full[cut:]]
    for again in resumed[len(full) - cut :]:
        parent = salesforce.org.get("Account", salesforce.org.get("Account", again["Id"])["ParentId"])
        assert iso_datetime(parent["SystemModstamp"]) >= stamp


def test_start_date_limits_history(salesforce, capsys):
    all_rows = run_tap(capsys).records["Account"]
    middle = all_rows[len(all_rows) // 2]["SystemModstamp"]
    later = run_tap(capsys, start_date=middle).records["Account"]
    assert later and all(r["SystemModstamp"] >= middle for r in later)
    assert len(later) < len(all_rows)


def test_expired_session_and_transient_errors_are_survived(salesforce, capsys):
    salesforce.faults.add(Fault(kind="expire_session", path="/query"))
    salesforce.faults.add(Fault(status=503, count=2, path="/query"))
    salesforce.faults.add(Fault(kind="disconnect", path="/query"))  # a connection reset
    salesforce.faults.add(Fault(kind="disconnect", path="/describe"))
    run = run_tap(capsys)
    assert len(run.records["Account"]) == len(salesforce.org.rows("Account"))


def test_expired_query_cursor_restarts_from_the_bookmark(salesforce, capsys):
    expected = [r["Id"] for r in run_tap(capsys).records["Account"]]
    salesforce.faults.add(Fault(kind="expire_cursor", path="/query/"))
    run = run_tap(capsys)
    assert [r["Id"] for r in run.records["Account"]] == expected  # nothing lost, nothing twice


def test_request_limit_ends_the_run_with_the_last_good_state(salesforce, capsys, caplog):
    salesforce.faults.add(Fault(kind="request_limit", path="/query/"))
    run = run_tap(capsys)
    assert run.exit_code == 1
    assert "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded." in caplog.text
    records, state = run.records["Account"], run.state
    # the first page (200 rows) made it; the bookmark is the last of them
    assert len(records) == 200
    assert state["bookmarks"]["Account"]["replication_key_value"] == records[-1]["SystemModstamp"]


def test_api_usage_budget_stops_cleanly(salesforce, capsys, caplog):
    caplog.set_level(logging.WARNING)
    salesforce.api_max = 400  # a few calls already use more than 1% of it
    try:
        run = run_tap(capsys, max_api_usage_percent=1, api_type="rest")
    finally:
        salesforce.api_max = 1_000_000
    assert "max_api_usage_percent" in caplog.text
    # stopped after the first page of the first stream, with its bookmark saved
    assert len(run.records["Account"]) == 200
    assert "Subscription__c" not in run.records
    assert (
        run.state["bookmarks"]["Account"]["replication_key_value"]
        == run.records["Account"][-1]["SystemModstamp"]
    )


def test_bad_credentials_give_one_clear_line_without_secrets(salesforce, capsys, caplog):
    with pytest.raises(SalesforceAuthError) as exc:
        TapSalesforceGroups(config={**CONFIG, "refresh_token": "stolen-token-123"}).sync_all()
    caplog.set_level(logging.ERROR)
    logging.getLogger("t").error(str(exc.value))
    assert "invalid_grant" in caplog.text
    assert "stolen-token-123" not in caplog.text + capsys.readouterr().err


def test_mapping_errors_are_all_reported_before_any_call(salesforce):
    bad = {
        "version": 1,
        "mappings": [
            {
                "object": "Account",
                "group_type": "",
                "group_name_field": "Id",
                "properties": [{"field": "Name; --", "property": "$x"}],
            }
        ],
    }
    with pytest.raises(ConfigValidationError) as exc:
        TapSalesforceGroups(config={**CONFIG, "mapping": bad})
    assert len(exc.value.errors) == 3
    assert salesforce.requests == []


def test_fields_missing_in_the_org_are_all_listed(salesforce):
    mapping = {
        "version": 1,
        "mappings": [
            {
                "object": "Account",
                "group_type": "org",
                "group_name_field": "Id",
                "properties": [{"field": "Nmae"}, {"field": "Owner.Nope"}, {"field": "Boss.Name"}],
            }
        ],
    }
    with pytest.raises(ConfigValidationError) as exc:
        TapSalesforceGroups(config={**CONFIG, "mapping": mapping})
    assert exc.value.errors == [
        "Account: no field 'Nmae' on Account",
        "Account: no field 'Nope' on User (in 'Owner.Nope')",
        "Account: no relationship 'Boss' on Account (in 'Boss.Name')",
    ]


def test_an_input_catalog_is_reused_without_describing_again(salesforce, capsys):
    catalog = TapSalesforceGroups(config=CONFIG).catalog_dict
    salesforce.clear_requests()
    tap = TapSalesforceGroups(config=CONFIG, catalog=catalog)
    assert [r["path"] for r in salesforce.requests if "describe" in r["path"]] == []
    assert (
        tap.streams["Account"].schema
        == next(s for s in catalog["streams"] if s["stream"] == "Account")["schema"]
    )
    tap.sync_all()
    assert capsys.readouterr().out.count('"type":"RECORD"') == len(salesforce.org.rows("Account")) + len(
        salesforce.org.rows("Subscription__c")
    )
    # A mapping that needs a field or object the catalog lacks (Meltano's cached catalog after
    # the mapping file was edited) fails loudly: the SDK would otherwise skip the object as
    # deselected, or fail on the field ("stream 'Account' has no field …"), later.
    mapping = {
        "version": 1,
        "mappings": [
            {**CONFIG["mapping"]["mappings"][0], "properties": [{"field": "Website", "property": "web"}]},
            {
                "object": "Case",
                "group_type": "case",
                "group_name_field": "Id",
                "properties": [{"field": "Subject", "property": "subject"}],
            },
        ],
    }
    with pytest.raises(ConfigValidationError) as stale:
        TapSalesforceGroups(config={**CONFIG, "mapping": mapping}, catalog=catalog).streams
    assert any("catalog given lacks mapped Account, Case" in e for e in stale.value.errors)


def test_verification_reports_unimportable_types_and_unqueryable_objects(salesforce):
    mapping = {
        "version": 1,
        "mappings": [
            {
                "object": "Document",
                "group_type": "doc",
                "group_name_field": "DeveloperName",
                "properties": [{"field": "Name"}, {"field": "Body"}],
            },
            {
                "object": "AggregateResult",
                "group_type": "agg",
                "group_name_field": "Id",
                "properties": [{"field": "Id"}],
            },
        ],
    }
    with pytest.raises(ConfigValidationError) as exc:
        TapSalesforceGroups(config={**CONFIG, "mapping": mapping})
    assert exc.value.errors == [
        "Document: field 'Body' has type 'base64', which cannot be imported",
        "AggregateResult: object is not queryable",
    ]


def test_sdk_keeps_our_state_key(salesforce, capsys):
    """The one place tap code writes into SDK state (streams.commit_bookmark).

    It relies on ``Stream.get_context_state`` handing out the live state dict, which the SDK
    copies whole into STATE and gives back on resume; this fails if an SDK upgrade changes that.
    """
    stamp = "2025-01-01T00:00:00+00:00"
    state = {
        "bookmarks": {
            "Account": {
                "replication_key": "SystemModstamp",
                "replication_key_value": stamp,
                "ids_at_bookmark": ["x"],
            }
        }
    }
    stream = TapSalesforceGroups(config=CONFIG, state=state).streams["Account"]
    live = stream.get_context_state(None)
    assert live is stream.get_context_state(None)
    assert live["ids_at_bookmark"] == ["x"]
    run = run_tap(capsys)
    last = run.records["Account"][-1]
    (emitted,) = run.state["bookmarks"]["Account"]["emitted"]
    at_end = {r["Id"] for r in run.records["Account"] if r["SystemModstamp"] == last["SystemModstamp"]}
    assert at_end <= set(emitted)
