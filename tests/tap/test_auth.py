"""Every login flow of the tap against the emulator's token and SOAP endpoints."""

from __future__ import annotations

import pytest

from emulators.salesforce import CLIENT_ID, CLIENT_SECRET, PASSWORD, SECURITY_TOKEN, USERNAME
from tap_salesforce_groups.auth import auth_flow, login_base_url
from tap_salesforce_groups.client import SalesforceClient
from tap_salesforce_groups.errors import SalesforceAuthError
from tests.tap.conftest import CONFIG, settings

BASE = {
    "login_url": CONFIG["login_url"],
    "mapping": CONFIG["mapping"],
    "client_id": None,
    "client_secret": None,
    "refresh_token": None,
}


def logged_in(config):
    client = SalesforceClient(settings(**config))
    assert client.describe("Account")["name"] == "Account"
    return client


def test_refresh_token_flow(salesforce):
    assert logged_in(CONFIG).flow == "refresh_token"


def test_jwt_bearer_flow(salesforce):
    config = {
        **BASE,
        "client_id": CLIENT_ID,
        "username": USERNAME,
        "private_key": salesforce.jwt_private_key_pem,
    }
    assert logged_in(config).flow == "jwt"


def test_client_credentials_flow(salesforce):
    assert (
        logged_in({**BASE, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}).flow
        == "client_credentials"
    )


def test_legacy_soap_login(salesforce):
    config = {**BASE, "username": USERNAME, "password": PASSWORD, "security_token": SECURITY_TOKEN}
    assert logged_in(config).flow == "password"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"client_secret": "wrong"}, "refresh_token flow) at https://"),
        (
            {
                "password": "wrong",
                "username": USERNAME,
                "security_token": SECURITY_TOKEN,
                "client_secret": None,
                "refresh_token": None,
                "client_id": None,
            },
            "password flow) at https://",
        ),
    ],
)
def test_failed_logins_say_which_flow_and_where(salesforce, overrides, message):
    config = settings(**overrides)
    with pytest.raises(
        SalesforceAuthError, match=r"Salesforce login \(" + message.replace("(", r"\(").replace(")", r"\)")
    ) as exc:
        SalesforceClient(config).login()
    assert "wrong" not in str(exc.value)


def test_domains_and_missing_credentials():
    assert login_base_url({"domain": "login"}) == "https://login.salesforce.com"
    assert login_base_url({"domain": "test"}) == "https://test.salesforce.com"
    assert login_base_url({"domain": "acme.my.salesforce.com"}) == "https://acme.my.salesforce.com"
    assert login_base_url({"domain": "test", "login_url": "https://127.0.0.1:1/"}) == "https://127.0.0.1:1"
    with pytest.raises(SalesforceAuthError, match="no complete Salesforce credentials"):
        auth_flow({"client_id": "x"})


@pytest.mark.parametrize(
    ("header", "usage"),
    [
        ("api-usage=18/5000", (18, 5000)),
        ("api-usage=10018/100000; api-bursts=1/750", (10018, 100000)),
        ("api-usage=25/5000; per-app-api-usage=17/250(appName=sample-connected-app)", (25, 5000)),
        ("per-app-api-usage=17/250(appName=x)", None),
    ],
)
def test_api_usage_is_read_from_every_limit_info_shape(header, usage):
    import requests

    client = SalesforceClient(settings())
    response = requests.Response()
    response.headers["Sforce-Limit-Info"] = header
    client._on_response(response)
    assert client.usage == usage
    assert client.requests_made == 1


def test_the_run_logs_requests_and_org_usage(salesforce, caplog):
    import logging

    from tap_salesforce_groups.tap import TapSalesforceGroups

    caplog.set_level(logging.INFO)
    TapSalesforceGroups(config=CONFIG).sync_all()
    line = next(r.getMessage() for r in caplog.records if "Salesforce requests this run" in r.getMessage())
    assert "org daily usage" in line


def test_a_soap_login_fault_is_not_retried(salesforce):
    # A SOAP fault is HTTP 500 (SOAP API Developer Guide, "Core Data Types": faults); it is an
    # answer, so the bad password costs one request, not max_retries backoffs.
    config = settings(
        client_id=None,
        client_secret=None,
        refresh_token=None,
        username=USERNAME,
        password="wrong",
        security_token=SECURITY_TOKEN,
        max_retries=5,
        max_backoff=30,
    )
    with pytest.raises(SalesforceAuthError, match="INVALID_LOGIN"):
        SalesforceClient(config).login()
    assert len([r for r in salesforce.requests if "/services/Soap/" in r["path"]]) == 1
