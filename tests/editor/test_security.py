"""The editor's guards: per-run token, Host header (DNS rebinding), body limit, clear 4xx, no secrets."""

from __future__ import annotations

import http.client
import json

import pytest
import requests

from emulators.salesforce import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN
from tap_salesforce_groups.editor.server import MAX_BODY_BYTES
from tests.support.tap import MAPPING

ROUTES = [
    ("GET", "/"),
    ("GET", "/static/editor.js"),
    ("GET", "/static/editor.css"),
    ("GET", "/api/objects"),
    ("GET", "/api/objects/Account/fields"),
    ("POST", "/api/validate"),
    ("POST", "/api/verify"),
    ("GET", "/api/mapping"),
    ("PUT", "/api/mapping"),
    ("GET", "/api/schedule"),
    ("PUT", "/api/schedule"),
]


def raw(editor, method, path, headers, body=b""):
    """A request with exactly these headers (requests would add its own Host)."""
    connection = http.client.HTTPConnection(*editor.server.server_address[:2], timeout=30)
    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for name, value in headers.items():
        connection.putheader(name, value)
    if body:
        connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body or None)
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), payload


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_the_token(editor, method, path):
    body = json.dumps(MAPPING).encode()
    host = {"Host": editor.server.authority}
    status, _, payload = raw(editor, method, path, host, body if method != "GET" else b"")
    assert status == 403
    assert json.loads(payload)["error"].startswith("missing editor token")
    wrong = {**host, "X-Editor-Token": editor.token[:-1] + ("A" if editor.token[-1] != "A" else "B")}
    status, _, payload = raw(editor, method, path, wrong, body if method != "GET" else b"")
    assert status == 403
    assert json.loads(payload)["error"] == "wrong editor token (each editor run has its own)"
    status, _, _ = raw(editor, method, f"{path}?token=nope", host, body if method != "GET" else b"")
    assert status == 403


def test_the_token_works_as_header_or_query(editor):
    assert requests.get(f"{editor.base}/api/objects?token={editor.token}", timeout=30).status_code == 200
    assert editor.call("GET", "/api/objects").status_code == 200
    page = requests.get(f"{editor.base}/?token={editor.token}", timeout=30)
    assert page.status_code == 200
    assert "Set up new group mapping" in page.text
    assert f"/static/editor.js?token={editor.token}" in page.text


@pytest.mark.parametrize(
    "host",
    ["attacker.example", "attacker.example:{port}", "localhost:{port}", "127.0.0.1", "127.0.0.1:1", ""],
)
def test_host_must_be_the_bound_address(editor, host):
    # DNS rebinding: a page on attacker.example resolved to 127.0.0.1 still sends its own Host.
    port = editor.server.server_address[1]
    headers = {"X-Editor-Token": editor.token}
    if host:
        headers["Host"] = host.format(port=port)
    status, _, payload = raw(editor, "GET", "/api/objects", headers)
    assert status == 403
    assert "is not this editor's address 127.0.0.1:" in json.loads(payload)["error"]
    status, _, _ = raw(editor, "GET", "/api/objects", {**headers, "Host": f"127.0.0.1:{port}"})
    assert status == 200


def test_oversized_body_is_413_and_not_read(editor):
    response = editor.call("POST", "/api/validate", b" " * (MAX_BODY_BYTES + 1))
    assert response.status_code == 413
    assert response.json()["error"] == (
        f"request body of {MAX_BODY_BYTES + 1} bytes is over the editor's limit of {MAX_BODY_BYTES} bytes"
    )
    assert response.headers["Connection"] == "close"


def test_clear_4xx_for_everything_else(editor):
    wrong_method = editor.call("DELETE", "/api/mapping")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "GET, HEAD, PUT"
    assert wrong_method.json() == {"error": "DELETE is not allowed on /api/mapping (allowed: GET, HEAD, PUT)"}
    assert editor.call("GET", "/api/validate").status_code == 405
    bad_json = editor.call("POST", "/api/validate", "{'version': 1}")
    assert bad_json.status_code == 400
    assert bad_json.json()["error"] == (
        "request body is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"
    )
    empty = editor.call("POST", "/api/validate", b"")
    assert empty.status_code == 400
    assert empty.json()["error"] == "request body is empty; send a JSON document"
    not_utf8 = editor.call("POST", "/api/validate", b'"\xff"')
    assert not_utf8.json()["error"] == "request body is not UTF-8"
    chunked = editor.call("POST", "/api/validate", iter([b"{}"]))
    assert chunked.status_code == 411
    unknown = editor.call("GET", "/api/nothing")
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "no such page or API: /api/nothing"}
    assert editor.call("GET", "/static/../server.py").status_code == 404
    assert editor.call("GET", "/static/server.py").status_code == 404


def test_responses_carry_protective_headers(editor):
    page = editor.call("GET", "/")
    assert page.headers["Referrer-Policy"] == "no-referrer"  # the token is in the page URL
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Server"] == "mapping-editor"


def test_no_credential_or_access_token_in_any_response(editor):
    session_id = editor.org.client.sf.session_id  # the Salesforce access token of this editor
    secrets = [CLIENT_SECRET, REFRESH_TOKEN, CLIENT_ID, session_id]
    responses = [
        editor.call("GET", "/"),
        editor.call("GET", "/static/editor.js"),
        editor.call("GET", "/api/objects"),
        editor.call("GET", "/api/objects/Account/fields"),
        editor.call("GET", "/api/objects/Nothing__c/fields"),
        editor.call("POST", "/api/validate", MAPPING),
        editor.call("POST", "/api/verify", MAPPING),
        editor.call("POST", "/api/verify", {"version": 1, "mappings": [{"object": "Nothing__c"}]}),
        editor.call("GET", "/api/mapping"),
        editor.call("PUT", "/api/mapping", MAPPING),
        editor.call("GET", "/api/schedule"),
        editor.call("PUT", "/api/schedule", {"cadence": "hourly"}),
        editor.call("GET", "/api/objects", headers={"X-Editor-Token": "wrong"}),
    ]
    assert all(r.status_code < 500 for r in responses)
    for response in responses:
        text = str(response.headers) + response.text
        for secret in secrets:
            assert secret not in text, f"{response.request.method} {response.request.url} leaks a credential"


def test_head_is_answered_without_a_body_and_the_connection_stays_usable(editor):
    # RFC 9110 §9.3.2: HEAD is GET without the content; a body after a HEAD answer would be read
    # as the next response on a kept-alive connection (http.client then fails on the status line).
    get = editor.call("GET", "/api/objects")
    connection = http.client.HTTPConnection(*editor.server.server_address[:2], timeout=30)
    headers = {"X-Editor-Token": editor.token}
    for path, status in (("/api/objects", 200), ("/", 200), ("/api/nothing", 404), ("/api/validate", 405)):
        connection.request("HEAD", path, headers=headers)
        response = connection.getresponse()
        assert response.status == status, path
        assert response.read() == b""
        if path == "/api/objects":
            assert response.getheader("Content-Length") == str(len(get.content))
            assert response.getheader("Content-Type") == "application/json; charset=utf-8"
        if path == "/api/validate":
            assert response.getheader("Allow") == "POST"
    connection.request("GET", "/api/objects", headers=headers)  # the same connection
    after = connection.getresponse()
    assert after.status == 200
    assert json.loads(after.read()) == get.json()
    connection.close()
    status, _, payload = raw(editor, "HEAD", "/api/objects", {"Host": editor.server.authority})
    assert (status, payload) == (403, b"")  # the guards hold for HEAD too


def test_the_route_table_is_the_api_and_the_docs_list_it():
    from pathlib import Path

    from tap_salesforce_groups.editor.server import ROUTES, resolve

    readme = (Path(__file__).resolve().parents[2] / "docs" / "mapping.md").read_text()
    for route in ROUTES:
        if route.path.startswith("/api/"):
            assert f"{route.path}`" in readme, (
                f"docs/mapping.md's API table lacks {route.method} {route.path}"
            )
        # Each line is reachable by its own method (a {name} stands for any one segment).
        assert resolve(route.method, route.path.replace("{name}", "x"))[0] is route
    assert resolve("GET", "/api/objects/Account%5F/fields")[1] == {"name": "Account_"}
