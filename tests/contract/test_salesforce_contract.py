"""The tap's parsers against Salesforce's documented response shapes (fixtures/salesforce/SOURCES.md).

A replay server answers over HTTPS with the recorded fixtures, so the real tap (login, describe,
query paging, Bulk API 2.0 job lifecycle, error handling) reads shapes that did not come from
our emulator.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from singer_sdk.exceptions import ConfigValidationError

from tap_salesforce_groups.auth import parse_soap_login
from tap_salesforce_groups.client import SalesforceClient
from tap_salesforce_groups.errors import QueryTooBig, SalesforceAuthError
from tap_salesforce_groups.tap import TapSalesforceGroups
from tests.contract.replay import FIXTURES, Answer, ReplayServer
from tests.mappings import document, group
from tests.support.emulators import CA
from tests.support.tap import run_tap

V = "/services/data/v62.0"
JOB = "750R0000000zlh9IAA"
MAPPING = document(
    group("Case", "case", "CaseNumber", (("owner.name", "owner"), ("comments__c", "comments")))
)

# What the tap must make of query_page1/2.json and bulk_results.csv: canonical names, flat
# relationship paths, null for a null relationship, ISO 8601 offsets, exact integers.
EXPECTED = [
    {
        "CaseNumber": "00001001",
        "Owner.Name": "Ada Lovelace",
        "Comments__c": 9007199254740993,
        "Id": "500xx000000bPFJAA2",
        "SystemModstamp": "2024-05-20T20:49:32.000+00:00",
        "IsDeleted": False,
    },
    {
        "CaseNumber": "00001002",
        "Owner.Name": "Support Queue",
        "Comments__c": None,
        "Id": "500xx000000bPFKAA2",
        "SystemModstamp": "2024-05-20T20:49:32.000+00:00",
        "IsDeleted": False,
    },
    {
        "CaseNumber": "00001003",
        "Owner.Name": None,
        "Comments__c": 3,
        "Id": "500xx000000bPFLAA2",
        "SystemModstamp": "2024-05-21T08:00:00.000+00:00",
        "IsDeleted": True,
    },
]


@pytest.fixture
def org() -> Iterator[ReplayServer]:
    server = ReplayServer(CA)
    server.on("POST", "/services/oauth2/token", Answer("oauth_token.json"))
    server.on("GET", f"{V}/sobjects/Case/describe", Answer("describe_case.json"))
    server.start()
    yield server
    server.stop()


def config(org: ReplayServer, **extra: object) -> dict:
    return {
        "login_url": org.url,
        "instance_url": org.url,  # the recorded instance_url is a documentation host
        "client_id": "3MVG9contract",
        "client_secret": "secret",
        "refresh_token": "5Aep861contract",
        "mapping": MAPPING,
        "max_backoff": 0,
        **extra,
    }


def test_rest_query_pages_relationships_and_types(org, capsys):
    org.on("GET", f"{V}/queryAll/?", Answer("query_page1.json"))
    org.on("GET", f"{V}/query/01gD0000002HU6KIAW-2", Answer("query_page2.json"))
    run = run_tap(capsys, **config(org, api_type="rest"))
    assert run.exit_code == 0
    assert run.records["Case"] == EXPECTED
    assert run.state["bookmarks"]["Case"]["replication_key_value"] == "2024-05-21T08:00:00.000+00:00"
    assert run.schemas["Case"]["key_properties"] == ["CaseNumber"]


def test_bulk_job_lifecycle_and_csv_results(org, capsys):
    org.on("POST", f"{V}/jobs/query", Answer("bulk_job_created.json"))
    org.on(
        "GET", f"{V}/jobs/query/{JOB}", Answer("bulk_job_in_progress.json"), Answer("bulk_job_complete.json")
    )
    org.on(
        "GET",
        f"{V}/jobs/query/{JOB}/results",
        Answer("bulk_results.csv", headers={"Sforce-NumberOfRecords": "3", "Sforce-Locator": "null"}),
    )
    org.on("DELETE", f"{V}/jobs/query/{JOB}", Answer(status=204))
    run = run_tap(capsys, **config(org, api_type="bulk"))
    assert run.exit_code == 0
    assert json.dumps(run.records["Case"]) == json.dumps(EXPECTED)  # byte-identical to REST
    assert ("DELETE", f"{V}/jobs/query/{JOB}") in org.log
    assert org.log.count(("GET", f"{V}/jobs/query/{JOB}")) == 2


def test_a_failed_bulk_job_reports_its_error_message(org):
    org.on("POST", f"{V}/jobs/query", Answer("bulk_job_created.json"))
    org.on("GET", f"{V}/jobs/query/{JOB}", Answer("bulk_job_failed.json"))
    org.on("DELETE", f"{V}/jobs/query/{JOB}", Answer(status=204))
    client = SalesforceClient(settings(org))
    with pytest.raises(
        QueryTooBig, match="failed: QUERY_TIMEOUT: Your query request was running for too long"
    ):
        list(client.bulk_rows("Case", "SELECT Id FROM Case", include_deleted=True))
    assert ("DELETE", f"{V}/jobs/query/{JOB}") in org.log


def settings(org: ReplayServer, **extra: object) -> dict:
    tap = TapSalesforceGroups(config=config(org, **extra), validate_config=False, setup_mapper=False)
    return dict(tap.config)


def test_describe_polymorphic_and_compound_fields(org):
    mapping = document(
        group("Case", "case", "CaseNumber", (("Owner.Department", "dept"), ("SuppliedAddress", "address")))
    )
    with pytest.raises(ConfigValidationError) as exc:
        TapSalesforceGroups(config=config(org, mapping=mapping))
    owner, address = exc.value.errors
    assert "polymorphic lookup Owner (Group or User)" in owner
    assert "use one of Alias, Email, FirstName, Id, IsActive" in owner
    assert (
        "'SuppliedAddress' is a compound address field; map its components SuppliedStreet, SuppliedCity"
        in address
    )


@pytest.mark.parametrize(
    ("fixture", "status", "message"),
    [
        ("error_query_timeout.json", 400, "QUERY_TIMEOUT: Your query request was running for too long."),
        ("error_malformed_duplicate.json", 400, "duplicate field selected: Id"),
    ],
)
def test_rest_error_bodies_name_the_error_code(org, fixture, status, message):
    org.on("GET", f"{V}/queryAll/?", Answer(fixture, status=status))
    client = SalesforceClient(settings(org))
    with pytest.raises(Exception, match=message) as exc:
        list(client.query_pages("SELECT Id FROM Case", include_deleted=True))
    assert isinstance(exc.value, QueryTooBig) == (fixture == "error_query_timeout.json")


def test_request_limit_stops_with_one_line(org, capsys, caplog):
    org.on("GET", f"{V}/queryAll/?", Answer("error_request_limit.json", status=403))
    run = run_tap(capsys, **config(org, api_type="rest"))
    assert run.exit_code == 1
    assert "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded." in caplog.text


def test_invalid_session_logs_in_again(org):
    org.routes.clear()
    org.on("POST", "/services/oauth2/token", Answer("oauth_token.json"))
    org.on(
        "GET",
        f"{V}/sobjects/Case/describe",
        Answer("error_invalid_session.json", status=401),
        Answer("describe_case.json"),
    )
    client = SalesforceClient(settings(org))
    assert client.describe("Case")["name"] == "Case"
    assert org.log.count(("POST", "/services/oauth2/token")) == 2
    assert client.usage == (25, 5000)  # from Sforce-Limit-Info


def test_oauth_error_is_one_line_naming_the_flow(org):
    org.routes.clear()
    org.on("POST", "/services/oauth2/token", Answer("oauth_invalid_grant.json", status=400))
    with pytest.raises(SalesforceAuthError) as exc:
        SalesforceClient(settings(org)).login()
    assert str(exc.value).endswith("failed: invalid_grant: expired access/refresh token")
    assert "5Aep861contract" not in str(exc.value)


def test_soap_login_result_and_fault():
    ok = (FIXTURES / "soap_login_ok.xml").read_text(encoding="utf-8")
    assert parse_soap_login(200, ok, "u") == (
        "00Dxx0000001gPL!AQ4AQFcTLsJoNZ",
        "https://MyDomainName.my.salesforce.com",
    )
    fault = (FIXTURES / "soap_login_fault.xml").read_text(encoding="utf-8")
    with pytest.raises(
        SalesforceAuthError, match="INVALID_LOGIN: Invalid username, password, security token"
    ):
        parse_soap_login(500, fault, "https://login.salesforce.com/services/Soap/u/62.0")
