"""The Salesforce emulator over real HTTPS sockets, with requests and simple-salesforce."""

from __future__ import annotations

import base64
import collections
import csv
import hashlib
import io
import json
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceOperationError

from emulators._server import Fault
from emulators.salesforce import (
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    REFRESH_TOKEN,
    SECURITY_TOKEN,
    USERNAME,
    ApiError,
    Org,
    SalesforceEmulator,
)
from tests.parents import parent_names

V = "/services/data/v62.0"
# the org's objects
QUERYABLE = (
    "Account", "User", "Subscription__c", "Document", "Case", "Wide__c", "Group", "Contact", "Lead", "Task",
    "ActivityFieldHistory",
)  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]
FIELD_PROPERTIES = {
    "name", "label", "type", "soapType", "nillable", "createable", "updateable", "custom",
    "calculated", "calculatedFormula", "compoundFieldName", "length", "precision", "scale",
    "digits", "unique", "externalId", "idLookup", "filterable", "sortable", "groupable",
    "referenceTo", "relationshipName", "picklistValues", "restrictedPicklist", "defaultValue",
    "deprecatedAndHidden",
}  # fmt: skip
TOKEN_KEYS = {"access_token", "instance_url", "id", "token_type", "issued_at", "signature", "scope"}
NO_COLUMN_TAIL = (
    "If you are attempting to use a custom field, be sure to append the '__c' after the custom "
    "field name. Please reference your WSDL or the describe call for the appropriate names."
)


@pytest.fixture(scope="module")
def sf():
    # 2,500 accounts: enough for one burst of >= 1000 rows sharing a SystemModstamp,
    # and for several 1,000-row pages.
    with SalesforceEmulator(accounts=2500, page_size=1000) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _clean(request):
    yield
    if "sf" in request.fixturenames:
        request.getfixturevalue("sf").reset()


def client(sf, token=None):
    s = requests.Session()
    s.verify = str(sf.ca_path)
    s.trust_env = False  # a REQUESTS_CA_BUNDLE in the environment must not override verify
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    return s


@pytest.fixture
def http(sf):
    return client(sf, sf.new_session())


def token_request(sf, data, **kw):
    return client(sf).post(f"{sf.url}/services/oauth2/token", data=data, **kw)


def soql(http, sf, query, endpoint="query", **kw):
    return http.get(f"{sf.url}{V}/{endpoint}", params={"q": query}, **kw)


def all_records(http, sf, query, endpoint="query"):
    body = soql(http, sf, query, endpoint).json()
    records = list(body["records"])
    while not body["done"]:
        body = http.get(sf.url + body["nextRecordsUrl"]).json()
        records += body["records"]
    return records


def simple(sf, token):
    return Salesforce(instance_url=sf.url, session_id=token, session=client(sf), version="62.0")


def error(response):
    body = response.json()
    assert isinstance(body, list) and len(body) == 1
    return body[0]["errorCode"], body[0]["message"]


# -- OAuth -----------------------------------------------------------------------------------


def test_refresh_token_grant_returns_salesforce_shape(sf):
    r = token_request(
        sf,
        {
            "grant_type": "refresh_token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": REFRESH_TOKEN,
        },
    )
    assert r.status_code == 200
    body = r.json()
    assert set(body) == TOKEN_KEYS  # no expires_in, no refresh_token
    assert body["instance_url"] == sf.url
    assert body["token_type"] == "Bearer"
    assert body["issued_at"].isdigit() and abs(int(body["issued_at"]) / 1000 - time.time()) < 60
    assert body["id"].startswith(f"{sf.url}/id/00D")
    assert client(sf, body["access_token"]).get(f"{sf.url}{V}/sobjects").status_code == 200


def test_client_credentials_and_jwt_grants(sf):
    basic = token_request(sf, {"grant_type": "client_credentials"}, auth=(CLIENT_ID, CLIENT_SECRET))
    in_body = token_request(
        sf,
        {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    )
    assertion = jwt.encode(
        {"iss": CLIENT_ID, "sub": USERNAME, "aud": sf.url, "exp": int(time.time()) + 180},
        sf.jwt_private_key_pem,
        algorithm="RS256",
    )
    bearer = token_request(
        sf, {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
    )
    for r in (basic, in_body, bearer):
        assert r.status_code == 200, r.text
        assert set(r.json()) == TOKEN_KEYS
        assert client(sf, r.json()["access_token"]).get(f"{sf.url}{V}/sobjects").status_code == 200


def _jwt(sf, key=None, **claims):
    payload = {"iss": CLIENT_ID, "sub": USERNAME, "aud": "https://login.salesforce.com"}
    payload["exp"] = int(time.time()) + 120
    payload.update(claims)
    return {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": jwt.encode(payload, key or sf.jwt_private_key_pem, algorithm="RS256"),
    }


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, ("invalid_request", "grant type is missing")),
        (  # the web server flow (connect): a code that this org never issued
            {"grant_type": "authorization_code", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
            ("invalid_grant", "invalid authorization code"),
        ),
        ({"grant_type": "device_code"}, ("unsupported_grant_type", "grant type not supported")),
        (
            {"grant_type": "refresh_token", "client_id": "x", "refresh_token": REFRESH_TOKEN},
            ("invalid_client_id", "client identifier invalid"),
        ),
        (
            {"grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": "bad"},
            ("invalid_client", "invalid client credentials"),
        ),
        (
            {
                "grant_type": "refresh_token",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "refresh_token": "revoked",
            },
            ("invalid_grant", "expired access/refresh token"),
        ),
        (  # the tap never uses the OAuth password flow (it logs in by SOAP instead)
            {
                "grant_type": "password",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "username": USERNAME,
                "password": PASSWORD + SECURITY_TOKEN,
            },
            ("unsupported_grant_type", "grant type not supported"),
        ),
        (
            {"grant_type": "client_credentials", "client_id": "nope", "client_secret": "x"},
            ("invalid_client_id", "client identifier invalid"),
        ),
    ],
)
def test_token_errors(sf, data, expected):
    r = token_request(sf, data)
    assert r.status_code == 400
    assert r.json() == {"error": expected[0], "error_description": expected[1]}


def test_jwt_errors(sf):
    other_key = SalesforceEmulator(accounts=1).jwt_private_key_pem
    cases = [
        (_jwt(sf, key=other_key), ("invalid_grant", "invalid assertion")),
        (_jwt(sf, exp=int(time.time()) - 10), ("invalid_grant", "expired authorization code")),
        (_jwt(sf, iss="someone"), ("invalid_client_id", "client identifier invalid")),
        (_jwt(sf, aud="https://example.com"), ("invalid_grant", "audience is invalid")),
        (_jwt(sf, sub="x@y.z"), ("invalid_grant", "user hasn't approved this consumer")),
    ]
    for data, (code, description) in cases:
        r = token_request(sf, data)
        assert (r.status_code, r.json()) == (
            400,
            {"error": code, "error_description": description},
        )
    r = client(sf).get(f"{sf.url}/services/oauth2/token")
    assert r.json() == {"error": "invalid_request", "error_description": "must use HTTP POST"}


def test_simple_salesforce_login_flows(sf):
    trick = f"{sf.url.removeprefix('https://')}/services/oauth2/token#"
    soap = Salesforce(
        username=USERNAME,
        password=PASSWORD,
        security_token=SECURITY_TOKEN,
        domain=f"{sf.url.removeprefix('https://')}/services/Soap/u/59.0#",
        session=client(sf),
    )
    creds = Salesforce(
        consumer_key=CLIENT_ID, consumer_secret=CLIENT_SECRET, domain=trick, session=client(sf)
    )
    by_jwt = Salesforce(
        username=USERNAME,
        consumer_key=CLIENT_ID,
        privatekey=sf.jwt_private_key_pem,
        domain=trick,
        session=client(sf),
    )
    for api in (soap, creds, by_jwt):
        assert api.query("SELECT Id FROM User LIMIT 1")["totalSize"] == 1
    # In login modes simple-salesforce logs in again on INVALID_SESSION_ID, and goes on.
    sf.expire_sessions()
    assert soap.query("SELECT COUNT() FROM User")["totalSize"] == 20
    assert by_jwt.query("SELECT COUNT() FROM User")["totalSize"] == 20


def test_soap_login_failure_is_a_login_fault(sf):
    r = client(sf).post(
        f"{sf.url}/services/Soap/u/59.0",
        data="<env:Envelope><n1:username>x</n1:username><n1:password>y</n1:password></env:Envelope>",
        headers={"content-type": "text/xml", "SOAPAction": "login"},
    )
    assert r.status_code == 500
    assert "<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>" in r.text


# -- sessions, limits --------------------------------------------------------------------------


def test_missing_or_expired_session_is_401(sf, http):
    expected = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    r = client(sf).get(f"{sf.url}{V}/sobjects")
    assert (r.status_code, r.json()) == (401, expected)
    assert client(sf, "00Dxx!bogus").get(f"{sf.url}{V}/sobjects").status_code == 401
    assert http.get(f"{sf.url}{V}/sobjects").status_code == 200
    sf.expire_sessions()
    r = http.get(f"{sf.url}{V}/sobjects")
    assert (r.status_code, r.json()) == (401, expected)
    with pytest.raises(SalesforceExpiredSession):
        simple(sf, http.headers["Authorization"].split()[1]).query("SELECT Id FROM User")
    assert client(sf, sf.new_session()).get(f"{sf.url}{V}/sobjects").status_code == 200


def test_limit_info_counts_calls(sf, http):
    assert http.get(f"{sf.url}{V}/sobjects").headers["Sforce-Limit-Info"] == "api-usage=1/1000000"
    assert http.get(f"{sf.url}{V}/sobjects").headers["Sforce-Limit-Info"] == "api-usage=2/1000000"
    assert sf.api_calls == 2


def test_request_limit_exceeded():
    with SalesforceEmulator(accounts=5, api_max=2) as small:
        http = client(small, small.new_session())
        for used in (1, 2):
            r = http.get(f"{small.url}{V}/sobjects")
            assert r.status_code == 200
            assert r.headers["Sforce-Limit-Info"] == f"api-usage={used}/2"
        r = http.get(f"{small.url}{V}/sobjects")
        assert r.status_code == 403
        assert r.json() == [
            {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
        ]
        assert small.api_calls == 2


# -- describe ----------------------------------------------------------------------------------


def test_global_describe_with_and_without_slash(sf, http):
    for path in ("sobjects", "sobjects/"):
        body = http.get(f"{sf.url}{V}/{path}").json()
        assert body["encoding"] == "UTF-8" and body["maxBatchSize"] == 200
        entries = {o["name"]: o for o in body["sobjects"]}
        assert set(entries) == {*QUERYABLE, "AggregateResult"}
        assert entries["Subscription__c"]["custom"] is True
        assert entries["Account"]["keyPrefix"] == "001"
        assert entries["Account"]["urls"]["describe"] == f"{V}/sobjects/Account/describe"


def test_sobject_describe_shape(sf, http):
    body = http.get(f"{sf.url}{V}/sobjects/Account/describe/").json()
    for key in ("name", "label", "custom", "customSetting", "queryable", "replicateable",
                "retrieveable", "keyPrefix", "fields", "childRelationships",
                "recordTypeInfos", "urls"):  # fmt: skip
        assert key in body
    fields = {f["name"]: f for f in body["fields"]}
    for f in fields.values():
        assert set(f) >= FIELD_PROPERTIES, f["name"]
    assert fields["Id"]["type"] == "id" and fields["Id"]["nillable"] is False
    assert fields["BillingAddress"]["type"] == "address"
    parts = ["Street", "City", "State", "PostalCode", "Country", "Latitude", "Longitude", "GeocodeAccuracy"]
    assert {n for n, f in fields.items() if f["compoundFieldName"] == "BillingAddress"} == {
        f"Billing{p}" for p in parts
    }
    owner = fields["OwnerId"]
    assert (owner["type"], owner["referenceTo"], owner["relationshipName"]) == (
        "reference",
        ["User"],
        "Owner",
    )
    number = fields["Account_Number__c"]
    assert (number["unique"], number["externalId"], number["nillable"], number["custom"]) == (
        True,
        True,
        False,
        True,
    )
    assert fields["Description"]["length"] == 32000
    assert fields["Segment__c"]["type"] == "multipicklist"
    assert [p["value"] for p in fields["Rating"]["picklistValues"]] == ["Hot", "Warm", "Cold"]
    sub = http.get(f"{sf.url}{V}/sobjects/Subscription__c/describe").json()
    arr = next(f for f in sub["fields"] if f["name"] == "ARR__c")
    assert arr["calculated"] is True and arr["calculatedFormula"] == "MRR__c * 12"
    user = http.get(f"{sf.url}{V}/sobjects/User/describe").json()
    assert "IsDeleted" not in {f["name"] for f in user["fields"]}


def test_document_describe_has_a_base64_body(sf, http):
    entry = next(o for o in http.get(f"{sf.url}{V}/sobjects").json()["sobjects"] if o["name"] == "Document")
    assert (entry["keyPrefix"], entry["label"], entry["labelPlural"], entry["custom"]) == (
        "015",
        "Document",
        "Documents",
        False,
    )
    assert entry["queryable"] is entry["retrieveable"] is entry["createable"] is True
    body = http.get(f"{sf.url}{V}/sobjects/Document/describe").json()
    fields = {f["name"]: f for f in body["fields"]}
    assert list(fields) == [
        "Id", "IsDeleted", "Name", "DeveloperName", "Type", "ContentType", "BodyLength", "Body",
        "Description", "CreatedDate", "LastModifiedDate", "SystemModstamp",
    ]  # fmt: skip
    for f in fields.values():
        assert set(f) >= FIELD_PROPERTIES, f["name"]
    blob = fields["Body"]
    assert (blob["type"], blob["soapType"], blob["nillable"]) == ("base64", "xsd:base64Binary", True)
    assert not (blob["filterable"] or blob["sortable"] or blob["groupable"] or blob["aggregatable"])
    name = fields["Name"]
    assert (name["type"], name["length"], name["nameField"], name["nillable"]) == ("string", 255, True, False)
    assert (fields["DeveloperName"]["length"], fields["DeveloperName"]["unique"]) == (80, True)
    assert (fields["Type"]["length"], fields["ContentType"]["length"]) == (40, 120)
    assert fields["BodyLength"]["type"] == "int"
    description = fields["Description"]
    assert (description["type"], description["length"]) == ("textarea", 255)
    assert fields["SystemModstamp"]["type"] == "datetime"


def test_aggregate_result_is_listed_but_not_queryable(sf, http):
    entry = next(
        o for o in http.get(f"{sf.url}{V}/sobjects").json()["sobjects"] if o["name"] == "AggregateResult"
    )
    body = http.get(f"{sf.url}{V}/sobjects/AggregateResult/describe").json()
    for described in (entry, body):
        assert described["label"] == "AggregateResult" and described["keyPrefix"] is None
        for flag in ("queryable", "retrieveable", "replicateable", "createable", "updateable", "deletable"):
            assert described[flag] is False, flag
    assert [f["name"] for f in body["fields"]] == ["Id"]


def test_unknown_object_describe_is_404(sf, http):
    r = http.get(f"{sf.url}{V}/sobjects/Nope__c/describe")
    assert r.status_code == 404
    assert r.json() == [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]


# -- query -------------------------------------------------------------------------------------


def test_paging_with_requests(sf, http):
    r = soql(http, sf, "SELECT Id, Name FROM Account ORDER BY Id", "queryAll")
    body = r.json()
    assert (body["totalSize"], body["done"], len(body["records"])) == (2500, False, 1000)
    # queryAll pages continue under /query/, as the docs say
    assert re.fullmatch(rf"{V}/query/01g\w{{15}}-1000", body["nextRecordsUrl"])
    record = body["records"][0]
    assert record["attributes"] == {
        "type": "Account",
        "url": f"{V}/sobjects/Account/{record['Id']}",
    }
    assert list(record) == ["attributes", "Id", "Name"]
    # extra query parameters on a locator URL are ignored (singer-io re-sends q)
    second = http.get(sf.url + body["nextRecordsUrl"], params={"q": "ignored"}).json()
    assert len(second["records"]) == 1000 and second["nextRecordsUrl"].endswith("-2000")
    third = http.get(sf.url + second["nextRecordsUrl"]).json()
    assert third["done"] is True and "nextRecordsUrl" not in third
    ids = [rec["Id"] for page in (body, second, third) for rec in page["records"]]
    assert ids == sorted(ids) and len(set(ids)) == 2500


def test_simple_salesforce_query_all_iter_pages(sf):
    api = simple(sf, sf.new_session())
    live = list(api.query_all_iter("SELECT Id, Owner.Name FROM Account"))
    everything = list(api.query_all_iter("SELECT Id FROM Account", include_deleted=True))
    assert len(everything) == 2500
    assert len(live) == sf.org.count("Account") < 2500  # a few rows are generated deleted
    assert all(rec["Owner"]["Name"] for rec in live)
    assert api.api_usage["api-usage"].total == 1_000_000
    pages = [e for e in sf.requests if e["path"].startswith(f"{V}/query/01g")]
    assert len(pages) >= 4  # both iterations paged through 1,000-row pages


def test_query_hides_soft_deleted_rows_query_all_shows_them(sf, http):
    target = sf.org.rows("Account", include_deleted=False)[0]["Id"]
    sf.org.soft_delete("Account", target)
    q = "SELECT Id, IsDeleted FROM Account"

    def found(endpoint):
        return [r["IsDeleted"] for r in all_records(http, sf, q, endpoint) if r["Id"] == target]

    assert found("query") == []
    assert found("queryAll") == [True]


def test_undelete_restores_a_row_and_stamps_it(sf, http):
    """Undelete is a change incremental readers must see.

    The row is live again with a new SystemModstamp (the safe reading: Salesforce documents that
    SystemModstamp moves whenever a user or an automated process changes the record; undelete changes
    IsDeleted).
    """
    target = sf.org.rows("Account", include_deleted=False)[0]["Id"]
    sf.org.soft_delete("Account", target)
    deleted_stamp = sf.org.get("Account", target)["SystemModstamp"]
    time.sleep(0.002)
    sf.org.undelete("Account", target)
    row = sf.org.get("Account", target)
    assert row["IsDeleted"] is False and row["SystemModstamp"] > deleted_stamp
    found = [r["Id"] for r in all_records(http, sf, "SELECT Id FROM Account", "query")]
    assert target in found
    with pytest.raises(ApiError, match="UNDELETE_FAILED"):
        sf.org.undelete("Account", target)


@pytest.mark.parametrize(
    "literal",
    [
        "2025-06-01T00:00:00Z",
        "2025-06-01T00:00:00.000Z",
        "2025-06-01T00:00:00.000000Z",
        "2025-06-01T00:00:00+0000",
        "2025-06-01T02:00:00+02:00",
    ],
)
def test_incremental_filter_and_order(sf, http, literal):
    query = (
        "SELECT Id, SystemModstamp FROM Account\n  WHERE  SystemModstamp >= "
        f"{literal}  ORDER BY SystemModstamp ASC, Id ASC"
    )
    records = all_records(http, sf, query, "queryAll")
    stamps = [r["SystemModstamp"] for r in records]
    assert stamps == sorted(stamps)
    assert all(s >= "2025-06-01T00:00:00.000+0000" for s in stamps)
    expected = [r for r in sf.org.rows("Account") if r["SystemModstamp"] >= "2025-06-01T00:00:00.000+0000"]
    assert len(records) == len(expected)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", stamps[0])


def test_generated_history_has_shared_timestamps(sf):
    counts = collections.Counter(r["SystemModstamp"] for r in sf.org.rows("Account"))
    sizes = sorted(counts.values())
    assert sizes[-1] >= 1000  # one mass update
    assert 1 in sizes and any(2 <= s <= 50 for s in sizes)
    assert max(counts) < "2025-12-31"  # history is in the past


def test_relationships_nest_and_null_references_are_null(sf, http):
    records = all_records(http, sf, "SELECT Id, ParentId, Parent.Name, Owner.Name, Owner.Email FROM Account")
    with_parent = next(r for r in records if r["ParentId"])
    without = next(r for r in records if not r["ParentId"])
    assert without["Parent"] is None
    assert with_parent["Parent"]["attributes"]["type"] == "Account"
    assert with_parent["Parent"]["Name"] == sf.org.get("Account", with_parent["ParentId"])["Name"]
    assert list(with_parent["Owner"]) == ["attributes", "Name", "Email"]
    subs = all_records(http, sf, "SELECT Name, Account__r.Name, ARR__c, MRR__c FROM Subscription__c")
    assert any(s["Account__r"] is None for s in subs)
    linked = next(s for s in subs if s["Account__r"] and s["MRR__c"] is not None)
    assert linked["Account__r"]["attributes"]["type"] == "Account"
    assert linked["ARR__c"] == pytest.approx(linked["MRR__c"] * 12)


def test_values_are_typed_like_salesforce(sf, http):
    rows = all_records(
        http,
        sf,
        "SELECT Name, AnnualRevenue, NumberOfEmployees, IsActive__c, LastActivityDate, "
        "BillingAddress, Segment__c, Description FROM Account",
        "queryAll",
    )
    assert all(isinstance(r["IsActive__c"], bool) for r in rows)
    assert any(isinstance(r["AnnualRevenue"], float) for r in rows)
    assert any(isinstance(r["NumberOfEmployees"], int) for r in rows)
    assert any(r["AnnualRevenue"] is None for r in rows)  # optional fields have nulls
    assert any(re.fullmatch(r"\d{4}-\d\d-\d\d", r["LastActivityDate"] or "") for r in rows)
    address = next(r["BillingAddress"] for r in rows if r["BillingAddress"])
    assert set(address) == {"city", "country", "geocodeAccuracy", "latitude", "longitude",
                            "postalCode", "state", "street"}  # fmt: skip
    assert any(";" in (r["Segment__c"] or "") for r in rows)
    assert any(len(r["Description"] or "") > 1024 for r in rows)
    names = "".join(r["Name"] for r in rows)
    for sample in ("é", "東", "🚀", '"', "\\", "'"):
        assert sample in names


def test_count_order_and_limit(sf, http):
    rows = sf.org.rows("Account", include_deleted=False)
    assert soql(http, sf, "select count() from account").json() == {
        "totalSize": len(rows),
        "done": True,
        "records": [],
    }
    names = [r["Name"] for r in all_records(http, sf, "SELECT Name FROM Account ORDER BY Name ASC LIMIT 5")]
    assert names == sorted((r["Name"] for r in rows), key=str.lower)[:5]  # text sorts case-insensitively


@pytest.mark.parametrize(
    ("where", "token"),
    [
        ("SystemModstamp >= 2025-01-01T00:00:00Z OR Id < 2025-01-01T00:00:00Z", "OR"),
        ("NOT SystemModstamp >= 2025-01-01T00:00:00Z", "NOT"),
        ("(SystemModstamp >= 2025-01-01T00:00:00Z)", "("),
        ("Rating = 'Hot'", "="),
        ("SystemModstamp > 2025-01-01T00:00:00Z", ">"),
        ("Rating IN ('Hot')", "'Hot'"),  # IN serves quoted ids only (the tap's children query)
        ("Name LIKE 'a%'", "LIKE"),
        ("Segment__c INCLUDES ('SMB')", "INCLUDES"),
        ("SystemModstamp >= 2025-01-01T00:00:00Z ORDER BY Name DESC", "DESC"),
        ("SystemModstamp >= 2025-01-01T00:00:00Z ORDER BY Name NULLS LAST", "NULLS"),
        ("SystemModstamp >= 2025-01-01T00:00:00Z LIMIT 5 OFFSET 2", "OFFSET"),
        ("LastActivityDate >= 2025-06-01", "2025-06-01"),
    ],
)
def test_soql_the_plugins_never_send_is_refused(sf, http, where, token):
    """Valid SOQL outside what the tap sends gets MALFORMED_QUERY naming the token, not a guess."""
    # The error shape (400, [{"message", "errorCode": "MALFORMED_QUERY"}], message ending in
    # "unexpected token: 'X'"): https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/
    # api_rest/errorcodes.htm and simple-salesforce's SalesforceMalformedRequest.
    for endpoint in ("query", "queryAll"):
        code, message = error(soql(http, sf, f"SELECT Id FROM Account WHERE {where}", endpoint))
        assert code == "MALFORMED_QUERY"
        assert message.endswith(
            f"unexpected token: '{token}' (valid SOQL, but not emulated: see emulators/README.md)"
        )
    for query in ("SELECT COUNT(Id) FROM Account", "SELECT a.Id FROM Account a"):
        code, message = error(soql(http, sf, query))
        assert code in ("MALFORMED_QUERY", "INVALID_FIELD"), message


@pytest.mark.parametrize(
    ("query", "code", "message"),
    [
        (
            "SELECT Id, Foo FROM Account",
            "INVALID_FIELD",
            "\nSELECT Id, Foo FROM Account\n           ^\nERROR at Row:1:Column:12\n"
            f"No such column 'Foo' on entity 'Account'. {NO_COLUMN_TAIL}",
        ),
        (
            "SELECT Owner.Nmae FROM Account",
            "INVALID_FIELD",
            "\nSELECT Owner.Nmae FROM Account\n       ^\nERROR at Row:1:Column:8\n"
            f"No such column 'Nmae' on entity 'User'. {NO_COLUMN_TAIL}",
        ),
        (
            "SELECT Id FROM Acount",
            "INVALID_TYPE",
            "\nSELECT Id FROM Acount\n               ^\nERROR at Row:1:Column:16\n"
            "sObject type 'Acount' is not supported. If you are attempting to use a custom "
            "object, be sure to append the '__c' after the entity name. Please reference your "
            "WSDL or the describe call for the appropriate names.",
        ),
        (
            "SELECT Id FORM Account",
            "MALFORMED_QUERY",
            "\nSELECT Id FORM Account\n          ^\nERROR at Row:1:Column:11\nunexpected token: 'FORM'",
        ),
    ],
)
def test_query_errors(sf, http, query, code, message):
    r = soql(http, sf, query)
    assert r.status_code == 400
    assert r.json() == [{"message": message, "errorCode": code}]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT Id FROM AggregateResult",
        "select count() from aggregateresult",
        "SELECT Id FROM AggregateResult LIMIT 1",
    ],
)
def test_query_from_aggregate_result_is_invalid_type(sf, http, query):
    column = query.lower().index("from ") + 6
    for endpoint in ("query", "queryAll"):
        r = soql(http, sf, query, endpoint)
        assert r.status_code == 400
        assert r.json() == [
            {
                "message": f"\n{query}\n{' ' * (column - 1)}^\nERROR at Row:1:Column:{column}\n"
                f"sObject type '{query.split()[query.lower().split().index('from') + 1]}' is not "
                "supported. If you are attempting to use a custom object, be sure to append the "
                "'__c' after the entity name. Please reference your WSDL or the describe call for "
                "the appropriate names.",
                "errorCode": "INVALID_TYPE",
            }
        ]


def test_document_body_is_returned_as_a_url_path(sf, http):
    stored = {r["Id"]: r for r in sf.org.rows("Document")}
    assert len(stored) == 5
    records = soql(http, sf, "SELECT Id, Name, Body, BodyLength FROM Document ORDER BY Name").json()[
        "records"
    ]
    assert len(records) == 5
    with_body = [r for r in records if r["Body"] is not None]
    assert len(with_body) == 4  # the external link document has no body
    for r in records:
        assert list(r) == ["attributes", "Id", "Name", "Body", "BodyLength"]
        if r["Body"] is None:
            assert stored[r["Id"]]["Body"] is None
            continue
        assert r["Body"] == f"{V}/sobjects/Document/{r['Id']}/Body"
        content = base64.b64decode(stored[r["Id"]]["Body"])
        assert r["BodyLength"] == len(content) > 0
    one = with_body[0]["Id"]
    older = soql(http, sf, "SELECT Id, Body FROM Document", "queryAll").json()
    assert [r["Body"] for r in older["records"] if r["Id"] == one] == [f"{V}/sobjects/Document/{one}/Body"]
    v59 = http.get(f"{sf.url}/services/data/v59.0/query", params={"q": "SELECT Id, Body FROM Document"})
    body = [r["Body"] for r in v59.json()["records"] if r["Id"] == one]
    assert body == [f"/services/data/v59.0/sobjects/Document/{one}/Body"]
    code, message = error(soql(http, sf, "SELECT Id FROM Document WHERE Body >= 2025-01-01T00:00:00Z"))
    assert code == "INVALID_FIELD" and "field 'Body' can not be filtered" in message
    code, message = error(soql(http, sf, "SELECT Id FROM Document ORDER BY Body"))
    assert code == "INVALID_FIELD" and "field 'Body' can not be sorted" in message


@pytest.mark.parametrize(
    ("where", "code", "detail"),
    [
        ("SystemModstamp >= 2025-01-01T00:00:00", "MALFORMED_QUERY", "unexpected token"),
        ("Description >= 2025-01-01T00:00:00Z", "INVALID_FIELD", "can not be filtered"),
        ("LastActivityDate >= 2025-01-01T00:00:00Z", "INVALID_FIELD", "must be of type date and"),
        ("Name < 2025-01-01T00:00:00Z", "INVALID_FIELD", "must be of type string and"),
        ("Foo__r.Name >= 2025-01-01T00:00:00Z", "INVALID_FIELD", "Didn't understand relationship 'Foo__r'"),
    ],
)
def test_where_errors(sf, http, where, code, detail):
    got_code, message = error(soql(http, sf, f"SELECT Id FROM Account WHERE {where}"))
    assert got_code == code
    assert detail in message and "ERROR at Row:1:Column:" in message


# -- mutations ---------------------------------------------------------------------------------


def test_mutations_bump_system_modstamp(sf, http):
    before = max(r["SystemModstamp"] for r in sf.org.rows("Account"))
    target = sf.org.rows("Account", include_deleted=False)[3]["Id"]
    sf.org.update("Account", target, Name="Renamed Ünïcode")
    new_id = sf.org.insert("Account", {"Name": "Brand New"})
    records = all_records(
        http,
        sf,
        f"SELECT Id, Name, SystemModstamp, LastModifiedDate FROM Account "
        f"WHERE SystemModstamp >= {before.replace('.000+0000', '.001Z')} ORDER BY SystemModstamp",
    )
    assert [r["Id"] for r in records] == [target, new_id]
    assert records[0]["Name"] == "Renamed Ünïcode"
    assert records[0]["SystemModstamp"] == records[0]["LastModifiedDate"] > before
    sf.org.soft_delete("Account", new_id)
    assert [r["Id"] for r in all_records(http, sf, "SELECT Id FROM Account") if r["Id"] == new_id] == []
    with pytest.raises(ApiError) as exc:
        sf.org.update("Account", target, Account_Number__c=sf.org.rows("Account")[0]["Account_Number__c"])
    assert exc.value.error_code == "DUPLICATE_VALUE"
    sf.reset()
    assert sf.org.get("Account", target)["Name"] != "Renamed Ünïcode"
    assert sf.org.count("Account", include_deleted=True) == 2500


# -- faults ------------------------------------------------------------------------------------


def test_status_and_delay_faults(sf, http):
    sobjects = f"{sf.url}{V}/sobjects"
    sf.faults.add(Fault(status=503, path="/sobjects"))
    sf.faults.add(Fault(status=500, path="/sobjects"))
    sf.faults.add(Fault(status=406, path="/sobjects"))
    sf.faults.add(Fault(delay=0.3, path="/sobjects"))
    assert http.get(sobjects).status_code == 503
    assert http.get(sobjects).json()[0]["errorCode"] == "UNKNOWN_EXCEPTION"
    not_acceptable = http.get(sobjects)
    assert (not_acceptable.status_code, not_acceptable.reason) == (406, "CustomNotAcceptable")
    started = time.monotonic()
    assert http.get(sobjects).status_code == 200
    assert time.monotonic() - started >= 0.3
    statuses = [e["status"] for e in sf.requests]
    assert statuses == [503, 500, 406, 200]


def test_fault_kinds(sf, http):
    sf.faults.add(Fault(kind="query_timeout"))
    code, message = error(soql(http, sf, "SELECT Id FROM Account"))
    assert (code, message) == ("QUERY_TIMEOUT", "Your query request was running for too long.")

    sf.faults.add(Fault(kind="expire_cursor"))
    first = soql(http, sf, "SELECT Id FROM Account").json()  # not a locator page: unaffected
    r = http.get(sf.url + first["nextRecordsUrl"])
    assert (r.status_code, error(r)) == (400, ("INVALID_QUERY_LOCATOR", "invalid query locator"))
    assert http.get(sf.url + first["nextRecordsUrl"]).status_code == 400  # the cursor is gone

    sf.faults.add(Fault(kind="request_limit"))
    r = soql(http, sf, "SELECT Id FROM User")
    assert (r.status_code, error(r)[0]) == (403, "REQUEST_LIMIT_EXCEEDED")

    sf.faults.add(Fault(kind="expire_session"))
    r = soql(http, sf, "SELECT Id FROM User")
    assert (r.status_code, error(r)[0]) == (401, "INVALID_SESSION_ID")
    assert soql(http, sf, "SELECT Id FROM User").status_code == 401  # stays expired
    assert sf.faults.pending() == []


def test_document_mutations_admin_rows_and_reset(sf, http):
    admin = client(sf)
    generated = admin.get(f"{sf.url}/__emulator/rows/Document").json()
    assert len(generated) == 5
    target = generated[0]["Id"]
    new_body = base64.b64encode(b"new content").decode()
    sf.org.update("Document", target, Body=new_body, Description="Replaced")
    added = sf.org.insert(
        "Document", {"Name": "Added", "DeveloperName": "Added", "Body": base64.b64encode(b"abc").decode()}
    )
    sf.org.soft_delete("Document", generated[1]["Id"])
    assert added.startswith("015")
    rows = {r["Id"]: r for r in admin.get(f"{sf.url}/__emulator/rows/Document?include_deleted=1").json()}
    assert len(rows) == 6 and rows[generated[1]["Id"]]["IsDeleted"] is True
    assert (rows[target]["Body"], rows[target]["BodyLength"]) == (new_body, len(b"new content"))
    assert rows[added]["BodyLength"] == 3
    assert rows[target]["SystemModstamp"] > generated[0]["SystemModstamp"]
    assert soql(http, sf, "SELECT COUNT() FROM Document").json()["totalSize"] == 5
    assert soql(http, sf, "SELECT COUNT() FROM Document", "queryAll").json()["totalSize"] == 6
    for fields, code in (
        ({"Name": "x", "DeveloperName": "added"}, "DUPLICATE_VALUE"),
        ({"Name": "x", "Body": "not base64!"}, "INVALID_TYPE_ON_FIELD_IN_RECORD"),
    ):
        with pytest.raises(ApiError) as exc:
            sf.org.insert("Document", fields)
        assert exc.value.error_code == code
    sf.reset()
    assert admin.get(f"{sf.url}/__emulator/rows/Document").json() == generated


def test_admin_api(sf, http):
    admin = client(sf)
    r = admin.post(f"{sf.url}/__emulator/faults", json={"status": 503, "count": 2, "path": "/query"})
    assert r.status_code == 201
    assert admin.post(f"{sf.url}/__emulator/faults", json={"kind": "nope"}).status_code == 400
    assert [soql(http, sf, "SELECT Id FROM User").status_code for _ in range(3)] == [503, 503, 200]
    log = admin.get(f"{sf.url}/__emulator/requests").json()
    last = dict(log[-1])
    assert isinstance(last.pop("time"), float)  # when it was answered (make bench's timeline)
    assert last == {
        "method": "GET",
        "path": f"{V}/query",
        "status": 200,
        "query": "SELECT Id FROM User",
    }
    assert http.headers["Authorization"].split()[1] not in json.dumps(log)
    live = admin.get(f"{sf.url}/__emulator/rows/Account").json()
    everything = admin.get(f"{sf.url}/__emulator/rows/Account?include_deleted=1").json()
    assert len(live) < len(everything) == 2500
    assert sf.expire_sessions() >= 1
    assert http.get(f"{sf.url}{V}/sobjects").status_code == 401
    admin.post(f"{sf.url}/__emulator/reset")
    assert sf.requests == [] and sf.api_calls == 0


# -- generation --------------------------------------------------------------------------------


def test_same_seed_same_rows_other_seed_other_rows():
    a, b, c = Org(accounts=300, seed=11), Org(accounts=300, seed=11), Org(accounts=300, seed=12)
    for name in (*QUERYABLE, "AggregateResult"):
        assert a.rows(name) == b.rows(name)
    assert a.rows("AggregateResult") == [] and len(a.rows("Document")) == 5
    assert a.rows("Account") != c.rows("Account")
    assert len(a.rows("Subscription__c")) == 150 and len(a.rows("User")) == 20
    ids = [r["Id"] for r in a.rows("Account")]
    assert all(re.fullmatch(r"001[0-9A-Za-z]{15}", i) for i in ids)


def test_existing_objects_rows_are_pinned():
    # Digests of the rows generated before Document and AggregateResult were added: new
    # objects draw from their own random streams, so these rows must never shift. Change the
    # digests only when generation of these objects is changed on purpose.
    org = Org(accounts=300, seed=11)
    added = {"Account_Rating__c"}  # a formula field added later: derived, no generated column
    digests = {
        name: hashlib.sha256(
            json.dumps(
                [{k: v for k, v in row.items() if k not in added} for row in org.rows(name)],
                sort_keys=True,
                ensure_ascii=False,
            ).encode()
        ).hexdigest()[:16]
        for name in ("Account", "User", "Subscription__c")
    }
    assert digests == {
        "Account": "2c979fe3752393a0",
        "User": "95c76c3ea9677564",
        "Subscription__c": "0e2c36be2272f6ea",
    }


def test_200k_accounts_generate():
    org = Org(accounts=200_000)
    assert org.count("Account", include_deleted=True) == 200_000
    assert org.count("Subscription__c", include_deleted=True) == 100_000


def test_cli_serves_until_sigterm(tmp_path):
    # README: "JWT: start it with `python -m emulators.salesforce --jwt-key-out key.pem`".
    key = tmp_path / "key.pem"
    args = ["--port", "0", "--accounts", "10", "--ca-dir", str(tmp_path), "--jwt-key-out", str(key)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulators.salesforce", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("https://127.0.0.1:")
        s = requests.Session()
        s.verify = str(tmp_path / "ca.pem")
        s.trust_env = False
        assert s.get(f"{url}/__emulator/info").json()["rows"]["Account"] == 10
        assert stat.S_IMODE(key.stat().st_mode) == 0o600  # created private
        claims = {"iss": CLIENT_ID, "sub": USERNAME, "aud": url, "exp": int(time.time()) + 180}
        grant = {
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": jwt.encode(claims, key.read_text(), algorithm="RS256"),
        }
        assert s.post(f"{url}/services/oauth2/token", data=grant).status_code == 200  # the key it signs with
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)  # waits, and closes the pipes
    assert proc.returncode == 0


# -- Bulk API 2.0 ------------------------------------------------------------------------------


def test_bulk2_query_pages_csv_with_simple_salesforce(sf):
    api = simple(sf, sf.new_session())
    query = "SELECT Id, Name, Owner.Name, IsActive__c, AnnualRevenue, SystemModstamp FROM Account"
    pages = list(api.bulk2.Account.query(query, max_records=1000, wait=0))
    assert len(pages) == 3  # every page repeats the header
    rows = [row for page in pages for row in csv.DictReader(io.StringIO(page))]
    assert len(rows) == sf.org.count("Account")
    assert (
        pages[0].splitlines()[0] == '"Id","Name","Owner.Name","IsActive__c","AnnualRevenue","SystemModstamp"'
    )
    assert {r["IsActive__c"] for r in rows} == {"true", "false"}
    assert "" in {r["AnnualRevenue"] for r in rows}  # nulls are empty
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z", rows[0]["SystemModstamp"])
    everything = list(api.bulk2.Account.query_all("SELECT Id FROM Account", wait=0))
    assert sum(page.count("\n") - 1 for page in everything) == 2500
    log = [e for e in sf.requests if e["method"] == "POST"]
    assert log[0]["query"] == query


def test_bulk2_job_lifecycle_and_errors(sf, http):
    jobs = f"{sf.url}{V}/jobs/query"
    sf.bulk.delay = 0.3
    try:
        job = http.post(jobs, json={"operation": "query", "query": "SELECT Id FROM User"}).json()
        assert (job["state"], job["object"], job["apiVersion"]) == ("UploadComplete", "User", 62.0)
        assert http.get(f"{jobs}/{job['id']}").json()["state"] == "InProgress"
        early = http.get(f"{jobs}/{job['id']}/results")
        assert (early.status_code, error(early)[0]) == (400, "JOB_NOT_COMPLETE")
        time.sleep(0.35)
        done = http.get(f"{jobs}/{job['id']}").json()
        assert (done["state"], done["numberRecordsProcessed"]) == ("JobComplete", 20)
    finally:
        sf.bulk.delay = 0.0
    page = http.get(f"{jobs}/{job['id']}/results", params={"maxRecords": 15})
    assert page.headers["Sforce-NumberOfRecords"] == "15"
    last = http.get(f"{jobs}/{job['id']}/results", params={"locator": page.headers["Sforce-Locator"]})
    assert (last.headers["Sforce-NumberOfRecords"], last.headers["Sforce-Locator"]) == ("5", "null")
    other_version = http.get(f"{sf.url}/services/data/v61.0/jobs/query/{job['id']}/results")
    assert other_version.status_code == 409
    assert http.delete(f"{jobs}/{job['id']}").status_code == 204
    assert http.get(f"{jobs}/{job['id']}").status_code == 404

    compound = http.post(jobs, json={"operation": "query", "query": "SELECT BillingAddress FROM Account"})
    assert error(compound) == (
        "FUNCTIONALITY_NOT_ENABLED",
        "Selecting compound data not supported in Bulk Query",
    )
    assert error(http.post(jobs, json={"operation": "query", "query": "SELECT Nope FROM Account"}))[0] == (
        "INVALID_FIELD"
    )
    tab = {"operation": "query", "query": "SELECT Id FROM User", "columnDelimiter": "TAB"}
    assert error(http.post(jobs, json=tab)) == (
        "INVALIDJOB",
        "only columnDelimiter COMMA and lineEnding LF are emulated",
    )


def test_bulk2_failed_job_fault(sf):
    api = simple(sf, sf.new_session())
    sf.faults.add(Fault(kind="bulk_job_failed"))
    with pytest.raises(SalesforceOperationError, match="QUERY_TIMEOUT"):
        list(api.bulk2.Account.query("SELECT Id FROM Account", wait=0))


def test_bulk2_query_selecting_base64_fails(sf, http):
    api = simple(sf, sf.new_session())
    with pytest.raises(SalesforceOperationError, match="FeatureNotEnabled : Binary field not supported"):
        list(api.bulk2.Document.query("SELECT Id, Name, Body FROM Document", wait=0))
    jobs = f"{sf.url}{V}/jobs/query"
    job = http.post(jobs, json={"operation": "queryAll", "query": "SELECT Body FROM Document"}).json()
    assert job["state"] == "UploadComplete"  # accepted; it fails while it runs
    polled = http.get(f"{jobs}/{job['id']}").json()
    assert (polled["state"], polled["errorMessage"], polled["numberRecordsProcessed"]) == (
        "Failed",
        "FeatureNotEnabled : Binary field not supported",
        0,
    )
    results = http.get(f"{jobs}/{job['id']}/results")
    assert (results.status_code, error(results)[0]) == (400, "JOB_NOT_COMPLETE")
    # Without the base64 field the same object reads fine in Bulk.
    pages = list(api.bulk2.Document.query("SELECT Id, Name, BodyLength FROM Document", wait=0))
    assert len(list(csv.DictReader(io.StringIO(pages[0])))) == 5
    aggregate = http.post(jobs, json={"operation": "query", "query": "SELECT Id FROM AggregateResult"})
    assert (aggregate.status_code, error(aggregate)[0]) == (400, "INVALID_TYPE")


# -- polymorphic lookups (issue 7, problem 4) --------------------------------------------------
# A polymorphic relationship (Case.Owner, Task.What, Task.Who) is read through the Name object,
# whatever each row's parent is:
# https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_relationships_and_polymorph_keys.htm
# Which Name fields each kind of parent fills:
# https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_name.htm


def test_task_describe_lists_polymorphic_who_and_what(sf, http):
    # Task.WhoId -> Contact or Lead ("Who"), WhatId -> objects with activities ("What"):
    # https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_task.htm
    body = http.get(f"{sf.url}{V}/sobjects/Task/describe").json()
    assert (body["name"], body["keyPrefix"]) == ("Task", "00T")
    fields = {f["name"]: f for f in body["fields"]}
    who, what, owner = fields["WhoId"], fields["WhatId"], fields["OwnerId"]
    assert (who["polymorphicForeignKey"], who["referenceTo"], who["relationshipName"]) == (
        True,
        ["Contact", "Lead"],
        "Who",
    )
    assert (what["polymorphicForeignKey"], what["relationshipName"]) == (True, "What")
    assert {"Account", "Subscription__c"} <= set(what["referenceTo"])
    assert (owner["polymorphicForeignKey"], owner["referenceTo"]) == (False, ["User"])
    assert {"Subject", "Status", "IsDeleted", "SystemModstamp", "CreatedDate"} <= set(fields)
    for target in (*who["referenceTo"], *what["referenceTo"]):  # every target is describable
        assert http.get(f"{sf.url}{V}/sobjects/{target}/describe").status_code == 200


def test_group_describe_and_queue_rows(sf, http):
    # A queue is a Group of Type "Queue":
    # https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_group.htm
    body = http.get(f"{sf.url}{V}/sobjects/Group/describe").json()
    assert (body["name"], body["keyPrefix"], body["undeletable"]) == ("Group", "00G", False)
    fields = {f["name"]: f for f in body["fields"]}
    assert {"Id", "Name", "DeveloperName", "Type", "Email", "SystemModstamp"} <= set(fields)
    assert "Queue" in [p["value"] for p in fields["Type"]["picklistValues"]]
    owner = {f["name"]: f for f in http.get(f"{sf.url}{V}/sobjects/Case/describe").json()["fields"]}[
        "OwnerId"
    ]
    assert (owner["polymorphicForeignKey"], owner["referenceTo"]) == (True, ["Group", "User"])
    queues = all_records(http, sf, "SELECT Id, Name, Type FROM Group")
    assert {q["Type"] for q in queues} == {"Queue", "Regular"}
    assert all(q["Id"].startswith("00G") for q in queues)


def test_case_owner_resolves_through_the_row_s_own_object(sf, http):
    groups = {g["Id"]: g for g in sf.org.rows("Group")}
    users = {u["Id"]: u for u in sf.org.rows("User")}
    owners = {c["Id"]: c["OwnerId"] for c in sf.org.rows("Case")}
    records = all_records(http, sf, "SELECT Id, Owner.Name, Owner.Type, Owner.FirstName FROM Case")
    kinds = collections.Counter()
    for record in records:
        owner_id = owners[record["Id"]]
        owner = record["Owner"]
        kind = "Group" if owner_id in groups else "User"
        kinds[kind] += 1
        # REST nests the parent as a Name record; its URL is the actual record's.
        assert owner["attributes"] == {"type": "Name", "url": f"{V}/sobjects/{kind}/{owner_id}"}
        if kind == "Group":  # a queue: no first name, Type "Queue"
            assert (owner["Name"], owner["Type"], owner["FirstName"]) == (
                groups[owner_id]["Name"],
                "Queue",
                None,
            )
        else:
            user = users[owner_id]
            assert (owner["Name"], owner["Type"], owner["FirstName"]) == (
                user["Name"],
                "User",
                user["FirstName"],
            )
    assert kinds["Group"] >= 5 and kinds["User"] >= 20


def test_bulk_csv_reads_queue_owners_by_name(sf):
    api = simple(sf, sf.new_session())
    (page,) = api.bulk2.Case.query("SELECT Id, Owner.Name, Owner.Type FROM Case", wait=0)
    assert page.splitlines()[0] == '"Id","Owner.Name","Owner.Type"'
    groups = {g["Id"]: g["Name"] for g in sf.org.rows("Group")}
    owners = {c["Id"]: c["OwnerId"] for c in sf.org.rows("Case")}
    rows = list(csv.DictReader(io.StringIO(page)))
    queued = [r for r in rows if owners[r["Id"]] in groups]
    assert queued and all(r["Owner.Type"] == "Queue" for r in queued)
    assert all(r["Owner.Name"] == groups[owners[r["Id"]]] for r in queued)


def test_task_what_and_who_name_each_row_s_parent(sf, http):
    names = parent_names(sf.org)
    tasks = {t["Id"]: t for t in sf.org.rows("Task")}
    records = all_records(http, sf, "SELECT Id, What.Name, What.Type, Who.Name FROM Task")
    seen = set()
    for record in records:
        task = tasks[record["Id"]]
        for relationship, ref in (("What", task["WhatId"]), ("Who", task["WhoId"])):
            if ref is None:
                assert record[relationship] is None
                seen.add((relationship, None))
                continue
            object_name, name = names[ref]
            assert record[relationship]["Name"] == name
            seen.add((relationship, object_name))
        if task["WhatId"] is not None:  # Type: the parent's object, for What.Type = 'Account' filters
            assert record["What"]["Type"] == names[task["WhatId"]][0]
    assert seen == {
        ("What", "Account"),
        ("What", "Subscription__c"),
        ("What", "Case"),
        ("What", None),
        ("Who", "Contact"),
        ("Who", "Lead"),
        ("Who", None),
    }


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("SELECT Id, Owner.Department FROM Case", "Department"),
        ("SELECT Id, What.Industry FROM Task", "Industry"),
        ("SELECT Id, Who.AccountId FROM Task", "AccountId"),
    ],
)
def test_fields_outside_the_name_object_are_invalid(sf, http, query, field):
    # The same INVALID_FIELD on REST and when a Bulk job is created: the entity is 'Name'.
    expected = f"No such column '{field}' on entity 'Name'. {NO_COLUMN_TAIL}"
    code, message = error(soql(http, sf, query))
    assert code == "INVALID_FIELD" and message.endswith(expected)
    job = http.post(f"{sf.url}{V}/jobs/query", json={"operation": "query", "query": query})
    assert job.status_code == 400 and error(job)[1].endswith(expected)


def test_the_name_object_has_no_relationships(sf, http):
    code, message = error(soql(http, sf, "SELECT Id, What.Owner.Name FROM Task"))
    assert code == "INVALID_FIELD" and "Didn't understand relationship 'Owner'" in message


def test_a_polymorphic_reference_accepts_any_listed_target(sf):
    queue = next(g["Id"] for g in sf.org.rows("Group") if g["Type"] == "Queue")
    case = sf.org.rows("Case")[0]["Id"]
    sf.org.update("Case", case, OwnerId=queue)
    assert sf.org.get("Case", case)["OwnerId"] == queue
    account = sf.org.rows("Account")[0]["Id"]
    with pytest.raises(ApiError, match="id value of incorrect type"):
        sf.org.update("Case", case, OwnerId=account)  # an Account cannot own a Case


def test_latency_switch_delays_each_page_of_records_only(sf, http):
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    def delayed(path: str) -> bool:
        return sf.latency_applies(Request(EnvironBuilder(path=path).get_environ()))

    # A page of records is the round trip a reading client waits on: REST query pages (first
    # and nextRecordsUrl) and Bulk API 2.0 results pages. Logins, describes and polls are not.
    assert delayed(f"{V}/query") and delayed(f"{V}/queryAll/") and delayed(f"{V}/query/01gABC-1000")
    assert delayed(f"{V}/jobs/query/750XYZ/results")
    for path in (
        "/services/oauth2/token",
        f"{V}/sobjects/Account/describe",
        f"{V}/jobs/query/750XYZ",
        f"{V}/jobs/query",
        "/__emulator/info",
    ):
        assert not delayed(path), path

    reply = http.post(f"{sf.url}/__emulator/latency", json={"seconds": 0.2, "jitter": 0.02}, timeout=10)
    assert reply.json() == {"seconds": 0.2, "jitter": 0.02}
    started = time.monotonic()
    assert soql(http, sf, "SELECT Id FROM Account LIMIT 5").status_code == 200
    assert time.monotonic() - started >= 0.18  # a lower bound: the sleep guarantees it
    assert http.get(f"{sf.url}/__emulator/info", timeout=10).json()["latency"] == {
        "seconds": 0.2,
        "jitter": 0.02,
    }
    sf.reset()
    assert sf.latency.seconds == 0.0


def test_a_pages_latency_is_its_whole_response_time_building_it_included(sf, http, monkeypatch):
    # A service's latency is the time to its answer: its own work is part of it. The switch
    # holds the answer until the latency has passed since arrival, so a page that takes long to
    # build (here 0.8 s, for a big page on a busy machine) is not made slower by it on top.
    handle = sf.handle

    def slow_to_build(request):
        time.sleep(0.8)
        return handle(request)

    monkeypatch.setattr(sf, "handle", slow_to_build)
    sf.set_latency(1.0)
    started = time.monotonic()
    assert soql(http, sf, "SELECT Id FROM Account LIMIT 5").status_code == 200
    elapsed = time.monotonic() - started
    assert elapsed >= 1.0  # the latency, at least
    assert elapsed < 1.7  # not 1.8 s or more: the build was not added to it
    sf.set_latency(0.4)
    sf.faults.add(Fault(delay=0.6, path="/query"))
    started = time.monotonic()
    assert soql(http, sf, "SELECT Id FROM Account LIMIT 5").status_code == 200
    assert time.monotonic() - started >= 1.0  # a delay fault, a slow answer, comes on top of it


def test_a_cut_body_fault_sends_the_head_of_the_answer_then_drops_the_connection(sf, http):
    sf.faults.add(Fault(kind="cut_body", path="/query"))
    with http.get(f"{sf.url}{V}/query", params={"q": "SELECT Id FROM Account"}, stream=True) as response:
        assert response.status_code == 200
        length = int(response.headers["Content-Length"])
        head = next(response.iter_content(64))
        assert re.match(rb'\{"totalSize":\d+,"done":false,"nextRecordsUrl":', head)
        with pytest.raises(requests.exceptions.ChunkedEncodingError, match="IncompleteRead"):
            b"".join(response.iter_content(64 * 1024))
    assert length > 3 * 64
    assert soql(http, sf, "SELECT Id FROM Account").json()["done"] is False  # the next one is whole


def test_refresh_token_rotation_invalidates_the_used_token_and_reuse_revokes_all(sf):
    """Salesforce Help 005316711 ("Refresh Token Rotation").

    Each exchange issues a new refresh token and invalidates the previous one; reusing an invalidated one
    revokes the current refresh token and all associated access tokens.
    """
    sf.rotate_refresh_tokens = True

    def refresh(token):
        return token_request(
            sf,
            {
                "grant_type": "refresh_token",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "refresh_token": token,
            },
        )

    first = refresh(REFRESH_TOKEN).json()
    assert set(first) == TOKEN_KEYS | {"refresh_token"} and first["refresh_token"] != REFRESH_TOKEN
    second = refresh(first["refresh_token"]).json()
    assert second["refresh_token"] not in (REFRESH_TOKEN, first["refresh_token"])
    other = sf.issue_refresh_token()  # another authorization of the same app: a family of its own
    other_session = refresh(other).json()
    live = client(sf, second["access_token"]).get(f"{sf.url}{V}/sobjects/Account/describe")
    assert live.status_code == 200

    reused = refresh(REFRESH_TOKEN)  # the configured token, invalidated by the first rotation
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert refresh(second["refresh_token"]).json()["error"] == "invalid_grant"  # current one revoked
    for token in (first["access_token"], second["access_token"]):
        assert client(sf, token).get(f"{sf.url}{V}/sobjects/Account/describe").status_code == 401
    # the other authorization is untouched
    assert client(sf, other_session["access_token"]).get(f"{sf.url}{V}/sobjects").status_code == 200
    assert refresh(other_session["refresh_token"]).status_code == 200
    rotation = client(sf).get(f"{sf.url}/__emulator/refresh-token-rotation").json()
    assert rotation == {"enabled": True, "rotations": 4, "revocations": 1}

    sf.reset()  # back to the configured token, without rotation (as constructed)
    assert set(refresh(REFRESH_TOKEN).json()) == TOKEN_KEYS
    assert set(refresh(REFRESH_TOKEN).json()) == TOKEN_KEYS
