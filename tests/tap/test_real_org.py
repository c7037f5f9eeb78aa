"""Issue 7: where real Salesforce differs from a friendly fake, each behaviour in the emulator.

Sources for the behaviours the emulator reproduces (cited per test too):
- Field names are case-insensitive; selecting one twice is MALFORMED_QUERY "duplicate field
  selected": https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select.htm
- Polymorphic relationships resolve through the Name object:
  https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_relationships_and_polymorph_keys.htm
- JWT audience for sandboxes is https://test.salesforce.com:
  https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_jwt_flow.htm
- Bulk API 2.0 job lifecycle (create, poll, results with Sforce-Locator, delete):
  https://developer.salesforce.com/docs/atlas.en-us.api_asynch.meta/api_asynch/query_create_job.htm
- QUERY_TIMEOUT and windowed reads as singer-io/tap-salesforce does
  (tap_salesforce/salesforce/rest.py: _query_recur halves the window on QUERY_TIMEOUT).
"""

from __future__ import annotations

import copy

import pytest
from singer_sdk.exceptions import ConfigValidationError

from emulators._server import Fault
from emulators.salesforce import CLIENT_ID, USERNAME
from tap_salesforce_groups.auth import jwt_audience
from tap_salesforce_groups.client import SalesforceClient
from tap_salesforce_groups.soql import MAX_URI_BYTES, build_soql, query_uri_bytes
from tap_salesforce_groups.streams import exact_int
from tap_salesforce_groups.tap import TapSalesforceGroups
from tests.mappings import document, group
from tests.support.tap import CONFIG, MAPPING, by_id, run_tap, same_records, settings

ANY_CASE = document(
    group(
        "Account",
        "org id",
        "id",  # the group name field in lower case: Id is selected once
        (("name", "account name"), ("INDUSTRY", "industry"), ("owner.name", "owner"), ("Id", "sf id")),
    )
)


def bulk_jobs(salesforce, method):
    return [r for r in salesforce.requests if "/jobs/query" in r["path"] and r["method"] == method]


# -- 1. names in any case ------------------------------------------------------------------------
@pytest.mark.parametrize("api_type", ["rest", "bulk"])
def test_a_mapping_in_any_case_reads_canonical_names_once(salesforce, capsys, api_type):
    run = run_tap(capsys, mapping=ANY_CASE, api_type=api_type)
    assert run.exit_code == 0
    records = run.records["Account"]
    assert set(records[0]) == {"Id", "Name", "Industry", "Owner.Name", "SystemModstamp", "IsDeleted"}
    rows = {r["Id"]: r for r in salesforce.org.rows("Account")}
    assert all(r["Industry"] == rows[r["Id"]]["Industry"] for r in records)
    assert any(r["Industry"] for r in records)  # not blanked (which would $unset in Amplitude)
    soql = next(r["query"] for r in salesforce.requests if r.get("query") and "COUNT" not in r["query"])
    # (a first read also takes each parent's stamp: the next run's relationship pass skips what it sent)
    assert soql.startswith(
        "SELECT Id, Name, Industry, Owner.Name, SystemModstamp, IsDeleted, Owner.SystemModstamp FROM Account"
    )


def test_rest_and_bulk_give_byte_identical_records_for_any_case(salesforce, capsys):
    rest = run_tap(capsys, mapping=ANY_CASE, api_type="rest")
    bulk = run_tap(capsys, mapping=ANY_CASE, api_type="bulk")
    assert same_records(rest.records, bulk.records)
    assert rest.schemas["Account"]["key_properties"] == ["Id"]


# -- 2. one retry and re-login policy for Bulk ---------------------------------------------------
@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=503, count=2, path="/jobs/query"),  # create (POST) and polls
        Fault(status=503, count=1, path="/results"),
        Fault(kind="expire_session", path="/results"),
        Fault(kind="expire_session", path="/jobs/query/750"),
        Fault(kind="disconnect", path="/jobs/query"),  # the create's connection drops
        Fault(kind="disconnect", path="/results"),
        Fault(status=406, path="/jobs/query/750"),
    ],
    ids=[
        "503-create",
        "503-results",
        "session-results",
        "session-poll",
        "reset-create",
        "reset-results",
        "406-poll",
    ],
)
def test_every_bulk_call_is_retried_or_logged_in_again(salesforce, capsys, fault):
    expected = run_tap(capsys, api_type="rest").records
    salesforce.reset()
    salesforce.faults.add(fault)
    run = run_tap(capsys, api_type="bulk")
    assert run.exit_code == 0
    assert by_id(run.records) == by_id(expected)


def test_bulk_request_limit_stops_cleanly_with_state(salesforce, capsys, caplog):
    salesforce.faults.add(Fault(kind="request_limit", path="/results"))
    run = run_tap(capsys, api_type="bulk")
    assert run.exit_code == 1
    assert "REQUEST_LIMIT_EXCEEDED" in caplog.text
    assert "Subscription__c" not in run.records
    assert run.states  # the state of what was emitted (nothing) is written, no traceback


def test_the_budget_is_checked_while_a_bulk_job_is_polled(salesforce, capsys, caplog):
    salesforce.bulk.delay = 5.0
    salesforce.api_max = 100
    try:
        run = run_tap(capsys, api_type="bulk", max_api_usage_percent=6)
    finally:
        salesforce.bulk.delay = 0.0
    assert "max_api_usage_percent" in caplog.text
    assert run.exit_code == 75 and run.records == {}  # EX_TEMPFAIL: stopped by the budget
    assert len(bulk_jobs(salesforce, "GET")) < 10  # stopped polling


def test_bulk_jobs_are_deleted_once_read(salesforce, capsys):
    run_tap(capsys, api_type="bulk")
    created = len(bulk_jobs(salesforce, "POST"))
    assert created == 2
    assert len(bulk_jobs(salesforce, "DELETE")) == created


# -- 3. QUERY_TIMEOUT: windows -------------------------------------------------------------------
def test_query_timeout_reads_in_halving_windows_with_state_per_row(salesforce, capsys, caplog):
    everything = run_tap(capsys, api_type="rest").records["Account"]
    salesforce.reset()
    salesforce.query_timeout_rows = 80  # an unbounded query over more rows times out
    run = run_tap(capsys, api_type="rest")  # Bulk avoids the timeout: tests/tap/test_bulk.py
    assert run.exit_code == 0
    assert [r["Id"] for r in run.records["Account"]] == [r["Id"] for r in everything]
    assert "reading in windows of" in caplog.text
    windows = [q for q in (r["query"] for r in salesforce.requests) if q and "SystemModstamp <" in q]
    assert len(windows) >= 4
    assert run.state["bookmarks"]["Account"]["replication_key_value"] == everything[-1]["SystemModstamp"]


# -- 4. polymorphic lookups ----------------------------------------------------------------------
def owned(object_name, *fields):
    name_field = "CaseNumber" if object_name == "Case" else "Name"
    return document(group(object_name, "g", name_field, tuple((f, f) for f in fields)))


@pytest.mark.parametrize("object_name", ["Case", "Subscription__c"])
def test_polymorphic_owner_accepts_name_object_fields(salesforce, capsys, object_name):
    run = run_tap(capsys, mapping=owned(object_name, "Owner.Name", "owner.email"))
    assert run.exit_code == 0
    users = {u["Id"]: u for u in salesforce.org.rows("User")}
    queues = {g["Id"]: g for g in salesforce.org.rows("Group")}
    rows = {r["Id"]: r for r in salesforce.org.rows(object_name)}
    for record in run.records[object_name]:
        owner_id = rows[record["Id"]]["OwnerId"]
        if owner_id in users:
            owner = users[owner_id]
            assert (record["Owner.Name"], record["Owner.Email"]) == (owner["Name"], owner["Email"])
        else:  # a queue: the Name object's Email is only filled for users
            assert (record["Owner.Name"], record["Owner.Email"]) == (queues[owner_id]["Name"], None)


@pytest.mark.parametrize("object_name", ["Case", "Subscription__c"])
@pytest.mark.parametrize("field", ["Owner.Department", "Owner.DeveloperName"])
def test_polymorphic_owner_refuses_other_fields_naming_the_allowed_ones(salesforce, field, object_name):
    with pytest.raises(ConfigValidationError) as exc:
        TapSalesforceGroups(config={**CONFIG, "mapping": owned(object_name, field)})
    (problem,) = exc.value.errors
    assert "polymorphic lookup Owner (Group or User)" in problem
    assert "Alias, Email, FirstName, Id, IsActive, LastName, LastReferencedDate" in problem


# -- 5. JWT audience -----------------------------------------------------------------------------
def jwt_config(salesforce, **extra):
    return settings(
        client_secret=None,
        refresh_token=None,
        client_id=CLIENT_ID,
        username=USERNAME,
        private_key=salesforce.jwt_private_key_pem,
        **extra,
    )


def test_jwt_to_a_sandbox_my_domain_uses_the_test_audience(salesforce):
    salesforce.sandbox = True
    config = jwt_config(salesforce, domain="acme--uat.sandbox.my.salesforce.com")
    assert jwt_audience(config) == "https://test.salesforce.com"
    assert SalesforceClient(config).describe("Account")["name"] == "Account"
    with pytest.raises(Exception, match="audience is invalid"):
        SalesforceClient(jwt_config(salesforce, domain="acme.my.salesforce.com")).login()
    override = jwt_config(
        salesforce, domain="acme.my.salesforce.com", jwt_audience="https://test.salesforce.com"
    )
    SalesforceClient(override).login()


# -- 6. long queries -----------------------------------------------------------------------------
def test_a_mapping_of_800_fields_reads_through_bulk(salesforce, capsys, caplog):
    caplog.set_level("INFO")
    fields = [f"Custom_Attribute_{k:03d}__c" for k in range(1, 801)]
    soql = build_soql("Wide__c", fields, replication_key="SystemModstamp")
    assert query_uri_bytes("62.0", soql) > MAX_URI_BYTES  # as a REST GET, the org answers 414
    mapping = document(group("Wide__c", "wide", "Name", tuple((f, f.lower()) for f in fields)))
    run = run_tap(capsys, mapping=mapping)
    assert run.exit_code == 0
    assert "using Bulk API 2.0" in caplog.text
    records = run.records["Wide__c"]
    assert len(records) == len(salesforce.org.rows("Wide__c"))
    rows = {r["Id"]: r for r in salesforce.org.rows("Wide__c")}
    assert all(r[f] == rows[r["Id"]][f] for r in records for f in fields)
    assert not [r for r in salesforce.requests if r["status"] == 414]


def test_api_type_rest_refuses_a_field_list_too_long_for_a_uri(salesforce, capsys, caplog):
    fields = [f"Custom_Attribute_{k:03d}__c" for k in range(1, 801)]
    mapping = document(group("Wide__c", "wide", "Name", tuple((f, f) for f in fields)))
    run = run_tap(capsys, mapping=mapping, api_type="rest")
    assert run.exit_code == 1
    assert "above Salesforce's 16384; set api_type to auto or bulk" in caplog.text


def test_the_emulator_refuses_a_uri_over_16384_bytes(salesforce):
    import requests

    token = salesforce.new_session()
    q = "SELECT Id FROM Account WHERE Name = '" + "x" * 17000 + "'"
    response = requests.get(
        f"{salesforce.url}/services/data/v62.0/query",
        params={"q": q},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 414


def test_the_emulator_counts_headers_with_the_uri(salesforce):
    """URI plus headers past 16,384 bytes is 431.

    Developer Limits and Allocations Quick Reference, "API Request Limits"; a real 431 in
    airbytehq/airbyte#20703.
    """
    import requests

    token = salesforce.new_session()
    url = f"{salesforce.url}/services/data/v62.0/query"
    q = "SELECT Id FROM Account LIMIT 1"
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(url, params={"q": q}, headers=headers, timeout=10).status_code == 200
    big = {**headers, "X-Padding": "x" * 16_300}
    assert requests.get(url, params={"q": q}, headers=big, timeout=10).status_code == 431


WIDE_FIELDS = [f"Custom_Attribute_{k:03d}__c" for k in range(1, 801)]


def _fields_for(client, low, high, window=None):
    """The first N wide fields whose REST request (URI and headers) is between low and high bytes."""
    from tap_salesforce_groups.soql import Window

    for n in range(300, 800):
        fields = ["Id", "Name", *WIDE_FIELDS[:n], "SystemModstamp"]
        soql = build_soql("Wide__c", fields, replication_key="SystemModstamp", window=window or Window())
        size = client.rest_request_bytes(soql, include_deleted=False)
        if low <= size <= high:
            return WIDE_FIELDS[:n], size
    raise AssertionError("no field count fits")


def test_headers_count_against_the_limit(salesforce, capsys, caplog):
    """A URI that alone fits, but not with the headers, goes through Bulk (REST would get 431)."""
    caplog.set_level("INFO")
    client = SalesforceClient(settings())
    fields, size = _fields_for(client, MAX_URI_BYTES + 1, MAX_URI_BYTES + 150)
    soql = build_soql("Wide__c", ["Id", "Name", *fields, "SystemModstamp"], replication_key="SystemModstamp")
    assert query_uri_bytes("62.0", soql) < MAX_URI_BYTES < size  # the URI alone would pass
    mapping = document(group("Wide__c", "wide", "Name", tuple((f, f.lower()) for f in fields)))
    run = run_tap(capsys, mapping=mapping)
    assert run.exit_code == 0, run.stopped_reason
    assert "REST request (URI and headers); using Bulk API 2.0" in caplog.text
    assert len(run.records["Wide__c"]) == len(salesforce.org.rows("Wide__c"))
    assert not [r for r in salesforce.requests if r["status"] in (414, 431)]


def test_windows_that_lengthen_the_query_are_checked_again(salesforce, capsys, caplog):
    """The first REST query fits.

    QUERY_TIMEOUT splits the read into windows, whose two bounds make the query longer than the limit: those
    windows go through Bulk, nothing gets 431.
    """
    from datetime import datetime, timedelta, timezone

    from tap_salesforce_groups.soql import Window

    caplog.set_level("INFO")
    client = SalesforceClient(settings())
    now = datetime.now(timezone.utc)
    bounded = Window(now - timedelta(days=400), now)
    fields, _ = _fields_for(client, MAX_URI_BYTES - 90, MAX_URI_BYTES - 20)
    soql = build_soql(
        "Wide__c", ["Id", "Name", *fields, "SystemModstamp"], replication_key="SystemModstamp", window=bounded
    )
    assert client.rest_request_bytes(soql, include_deleted=False) > MAX_URI_BYTES
    # The row count passes, the unbounded REST query times out: windows follow.
    salesforce.faults.add(Fault(kind="query_timeout", after=1))
    mapping = document(group("Wide__c", "wide", "Name", tuple((f, f.lower()) for f in fields)))
    run = run_tap(capsys, mapping=mapping, api_type="auto", bulk_threshold=10**9)
    assert run.exit_code == 0, run.stopped_reason
    assert "QUERY_TIMEOUT" in caplog.text and "using Bulk API 2.0" in caplog.text
    assert {r["Id"] for r in run.records["Wide__c"]} == {r["Id"] for r in salesforce.org.rows("Wide__c")}
    assert not [r for r in salesforce.requests if r["status"] in (414, 431)]


# -- 7. values -----------------------------------------------------------------------------------
def test_integers_are_exact_beyond_2_53():
    assert exact_int("9007199254740993") == 9007199254740993
    assert exact_int("12.0") == 12


def test_compound_fields_are_refused_naming_their_components(salesforce):
    mapping = copy.deepcopy(MAPPING)
    mapping["mappings"][0]["properties"].append({"field": "BillingAddress", "property": "address"})
    with pytest.raises(ConfigValidationError) as exc:
        TapSalesforceGroups(config={**CONFIG, "mapping": mapping})
    (problem,) = exc.value.errors
    assert problem.startswith("Account: 'BillingAddress' is a compound address field; map its components")
    assert "BillingStreet, BillingCity" in problem


@pytest.mark.parametrize(
    ("settings_", "audience"),
    [
        ({"domain": "login"}, "https://login.salesforce.com"),
        ({"domain": "test"}, "https://test.salesforce.com"),
        ({"domain": "acme.my.salesforce.com"}, "https://login.salesforce.com"),
        # login_url replaces domain as the login host: its host decides too.
        ({"domain": "login", "login_url": "https://test.salesforce.com"}, "https://test.salesforce.com"),
        (
            {"domain": "login", "login_url": "https://acme--uat.sandbox.my.salesforce.com"},
            "https://test.salesforce.com",
        ),
        # Scratch orgs are sandboxes (Salesforce DX Developer Guide, "Scratch Orgs").
        ({"domain": "ability-ruby-1234-dev-ed.scratch.my.salesforce.com"}, "https://test.salesforce.com"),
        (
            {"login_url": "https://ability-ruby-1234-dev-ed.scratch.my.salesforce.com/"},
            "https://test.salesforce.com",
        ),
        ({"domain": "test", "jwt_audience": "https://acme.my.site.com"}, "https://acme.my.site.com"),
    ],
)
def test_jwt_audience_follows_login_url_and_scratch_orgs(settings_, audience):
    assert jwt_audience(settings_) == audience


# -- 7. objects Bulk refuses, keys SOQL cannot filter ----------------------------------------------
HISTORY = document(
    group(
        "ActivityFieldHistory", "task change", "Id", (("FieldName", "field"), ("NewValueText", "new value"))
    )
)


@pytest.mark.parametrize("api_type", ["bulk", "rest", "auto"])
def test_history_object_reads_through_rest_without_a_bookmark(salesforce, capsys, caplog, api_type):
    """ActivityFieldHistory.

    Bulk answers INVALIDENTITY "not supported by the Bulk API" (airbytehq/airbyte#13088) and its
    SystemModstamp is filterable: false in describe (airbytehq/airbyte PR #68166): read through REST, with no
    bookmark, every row every run.
    """
    caplog.set_level("INFO")
    run = run_tap(capsys, mapping=HISTORY, api_type=api_type, start_date="2020-01-01T00:00:00Z")
    assert run.exit_code == 0, run.stopped_reason
    rows = salesforce.org.rows("ActivityFieldHistory")
    assert {r["Id"] for r in run.records["ActivityFieldHistory"]} == {r["Id"] for r in rows}
    assert not run.schemas["ActivityFieldHistory"].get("bookmark_properties")  # no bookmark
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "SystemModstamp cannot be filtered in SOQL; every run reads all its rows" in m for m in messages
    )
    refused = [m for m in messages if "not supported by the Bulk API" in m]
    if api_type == "bulk":
        assert refused == [
            "ActivityFieldHistory: Bulk API 2.0 query on ActivityFieldHistory (create): INVALIDENTITY: "
            "Entity 'ActivityFieldHistory' is not supported by the Bulk API.; reading it through REST instead"
        ]
    else:
        assert refused == []
    queries = [r["query"] or "" for r in salesforce.requests if "ActivityFieldHistory" in (r["query"] or "")]
    assert not any("WHERE SystemModstamp" in q for q in queries)
