"""Every login flow of the tap against the emulator's token and SOAP endpoints."""

from __future__ import annotations

import json

import pytest
import requests

from emulators.salesforce import CLIENT_ID, CLIENT_SECRET, PASSWORD, REFRESH_TOKEN, SECURITY_TOKEN, USERNAME
from tap_salesforce_groups.auth import auth_flow, login_base_url
from tap_salesforce_groups.client import SalesforceClient
from tap_salesforce_groups.errors import SalesforceAuthError
from tests.support.tap import CONFIG, settings

# settings() starts from CONFIG (the emulator's login_url, the mapping) and drops the None values.
BASE = {
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


@pytest.mark.parametrize("domain", ["login", "test", "https://login.salesforce.com/"])
def test_client_credentials_need_a_my_domain(capsys, domain):
    # Salesforce Help 000886201: the client credentials flow is refused on login.salesforce.com and
    # test.salesforce.com ("request not supported on this domain"); say so before any request.
    config = {
        **BASE,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "domain": domain,
        "login_url": None,
    }
    with pytest.raises(
        SalesforceAuthError, match=r"work only on the org's My Domain, not (login|test)\.salesforce\.com"
    ):
        SalesforceClient(settings(**config)).describe("Account")
    assert CLIENT_SECRET not in capsys.readouterr().err


def test_legacy_soap_login(salesforce):
    config = {**BASE, "username": USERNAME, "password": PASSWORD, "security_token": SECURITY_TOKEN}
    assert logged_in(config).flow == "password"


@pytest.mark.parametrize("api_version", ["62.0", "66.0"])
def test_soap_login_is_always_at_64_with_one_deprecation_warning(salesforce, caplog, api_version):
    """SOAP login() is always called at 64.0, with one deprecation warning.

    login() exists up to API 64.0 and is retired for every version on 2027-06-01 (Salesforce
    Help 005132110): the tap calls it at 64.0 whatever api_version says (the REST calls use
    api_version), and says once that it is going away.
    """
    config = {
        **BASE,
        "username": USERNAME,
        "password": PASSWORD,
        "security_token": SECURITY_TOKEN,
        "api_version": api_version,
    }
    salesforce.clear_requests()
    client = logged_in(config)
    client.login()  # a second login (as after an expired session) warns no more
    paths = [r["path"] for r in salesforce.requests]
    assert paths.count("/services/Soap/u/64.0") == 2
    assert f"/services/data/v{api_version}/sobjects/Account/describe" in paths
    warnings = [r.getMessage() for r in caplog.records if "SOAP login()" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "2027-06-01" in warnings[0] and "connect" in warnings[0]


def test_emulator_soap_login_is_gone_from_65(salesforce):
    envelope = (
        '<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Body>'
        f'<n1:login xmlns:n1="urn:partner.soap.sforce.com"><n1:username>{USERNAME}</n1:username>'
        f"<n1:password>{PASSWORD}{SECURITY_TOKEN}</n1:password></n1:login></env:Body></env:Envelope>"
    )
    headers = {"content-type": "text/xml", "SOAPAction": "login"}
    for version, status in (("64.0", 200), ("65.0", 500)):
        answer = requests.post(
            f"{salesforce.url}/services/Soap/u/{version}", data=envelope, headers=headers, timeout=30
        )
        assert answer.status_code == status
    assert "UNSUPPORTED_API_VERSION" in answer.text


REFRESH = "OAuth refresh token (client_id + client_secret + refresh_token)"
JWT = "JWT bearer (client_id + private_key + username)"


@pytest.mark.parametrize(
    ("overrides", "used", "unused"),
    [
        # connect, then JWT bearer set up beside it: the refresh token is still the one used.
        ({"private_key": "jwt", "username": USERNAME}, REFRESH, JWT),
        # JWT bearer, with a password and the client secret left from before.
        (
            {"refresh_token": None, "private_key": "jwt", "username": USERNAME, "password": PASSWORD},
            JWT,
            "username/password (username + password); client credentials (client_id + client_secret)",
        ),
        ({}, REFRESH, None),  # one set: client_id + client_secret are part of it
        (
            {"refresh_token": None, "client_secret": None, "private_key": "jwt", "username": USERNAME},
            JWT,
            None,
        ),
    ],
)
def test_more_than_one_credential_set_says_which_is_used(salesforce, caplog, overrides, used, unused):
    """The first complete set is used, as before; one warning names it and the sets left unused."""
    if overrides.get("private_key") == "jwt":
        overrides = {**overrides, "private_key": salesforce.jwt_private_key_pem}
    client = logged_in(overrides)
    client.login()  # a second login (as after an expired session) warns no more
    assert used.startswith({"refresh_token": "OAuth", "jwt": "JWT"}[client.flow])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Salesforce credentials:")]
    if unused is None:
        assert lines == []
        return
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith(
        f"Salesforce credentials: logging in with {used}; also set and not used: {unused}. "
    )
    assert lines[0].endswith(
        "unset the settings of the sets you do not use (refresh_token when moving from connect to JWT bearer)"
    )
    for secret in (CLIENT_SECRET, REFRESH_TOKEN, PASSWORD, salesforce.jwt_private_key_pem):
        assert secret not in lines[0]


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


# -- refresh token rotation (Salesforce Help 005316711, "Refresh Token Rotation") ------------------


def test_a_rotated_refresh_token_is_kept_and_used_for_every_later_login(salesforce, tmp_path, caplog):
    """With rotation on, each refresh returns a new token and the one sent is dead.

    Reusing it revokes them all. Each client is a new process's login: the token must outlive it.
    """
    salesforce.rotate_refresh_tokens = True
    path = tmp_path / "project" / "refresh-token.json"
    config = settings(refresh_token_file=str(path))
    for _ in range(3):
        logged_in(config)
    rotation = salesforce.auth.refresh_tokens
    assert (rotation.rotations, rotation.revocations) == (3, 0)
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    assert REFRESH_TOKEN not in text  # keyed by a hash of the configured token
    (kept,) = json.loads(text).values()
    assert rotation.valid(kept["refresh_token"])
    assert kept["refresh_token"] not in caplog.text


def test_a_newly_configured_refresh_token_wins_over_the_kept_one(salesforce, tmp_path):
    salesforce.rotate_refresh_tokens = True
    path = tmp_path / "refresh-token.json"
    logged_in(settings(refresh_token_file=str(path)))  # rotates the configured token once
    reconnected = salesforce.issue_refresh_token()  # e.g. `connect` stored a new token
    for _ in range(2):
        logged_in(settings(refresh_token_file=str(path), refresh_token=reconnected))
    # The new token was used as configured (reusing the kept one would have revoked nothing, but
    # sending the old lineage's token would): its own lineage now has an entry, the old one still works.
    assert salesforce.auth.refresh_tokens.revocations == 0
    assert len(json.loads(path.read_text())) == 2
    logged_in(settings(refresh_token_file=str(path)))
    assert salesforce.auth.refresh_tokens.revocations == 0


def test_without_rotation_the_configured_token_is_used_and_nothing_is_kept(salesforce, tmp_path):
    path = tmp_path / "refresh-token.json"
    for _ in range(2):
        logged_in(settings(refresh_token_file=str(path)))
    assert not path.exists()


def test_the_default_token_file_is_in_the_meltano_project(salesforce, tmp_path, monkeypatch):
    monkeypatch.setenv("MELTANO_PROJECT_ROOT", str(tmp_path))
    salesforce.rotate_refresh_tokens = True
    config = settings()
    assert config["refresh_token_file"] == ".meltano/tap-salesforce-groups/refresh-token.json"
    logged_in(config)
    logged_in(config)
    assert (tmp_path / ".meltano/tap-salesforce-groups/refresh-token.json").stat().st_mode & 0o777 == 0o600


def test_a_refused_kept_token_names_the_file_not_the_token(salesforce, tmp_path):
    salesforce.rotate_refresh_tokens = True
    path = tmp_path / "refresh-token.json"
    config = settings(refresh_token_file=str(path))
    logged_in(config)
    kept = next(iter(json.loads(path.read_text()).values()))["refresh_token"]
    salesforce.reset()  # the org forgets every rotated token (as a revocation would)
    salesforce.rotate_refresh_tokens = True
    with pytest.raises(SalesforceAuthError) as exc:
        SalesforceClient(config).login()
    message = str(exc.value)
    assert "invalid_grant" in message and str(path) in message and "connect again" in message
    assert kept not in message and REFRESH_TOKEN not in message


def test_a_corrupt_token_file_is_one_clear_error(salesforce, tmp_path):
    path = tmp_path / "refresh-token.json"
    path.write_text("not json")
    with pytest.raises(
        SalesforceAuthError, match=r"refresh_token_file .*refresh-token.json: not a JSON object"
    ):
        SalesforceClient(settings(refresh_token_file=str(path))).login()
