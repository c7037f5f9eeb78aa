"""The Amplitude /groupidentify emulator, exercised over real HTTPS sockets with ``requests``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

from emulators._server import Fault
from emulators.amplitude import API_KEY, AmplitudeEmulator

FORM = "application/x-www-form-urlencoded"
SECRET_BAD_KEY = "sk-live-do-not-log-7f3a9c"


@pytest.fixture(scope="module")
def emulator():
    with AmplitudeEmulator() as em:
        yield em


@pytest.fixture(autouse=True)
def _clean(emulator):
    emulator.reset()
    yield
    emulator.reset()


def ident(value="1", props=None, group_type="account", **extra):
    return {
        "group_type": group_type,
        "group_value": value,
        "group_properties": {"name": "Acme"} if props is None else props,
        **extra,
    }


def post(emulator, identification, *, api_key=API_KEY, timeout=10, **kwargs):
    """POST form-encoded like the target does; ``identification`` may be raw text."""
    data = {}
    if api_key is not None:
        data["api_key"] = api_key
    if identification is not None:
        data["identification"] = (
            identification if isinstance(identification, str) else json.dumps(identification)
        )
    return requests.post(
        emulator.url + "/groupidentify",
        data=data,
        verify=str(emulator.ca_path),
        timeout=timeout,
        **kwargs,
    )


def post_raw(emulator, body: bytes | str, content_type: str | None = FORM, **kwargs):
    headers = {"Content-Type": content_type} if content_type else {}
    return requests.post(
        emulator.url + "/groupidentify",
        data=body,
        headers=headers,
        verify=str(emulator.ca_path),
        timeout=10,
        **kwargs,
    )


def admin(emulator, method, route, **kwargs):
    return requests.request(
        method,
        f"{emulator.url}/__emulator/{route}",
        verify=str(emulator.ca_path),
        timeout=10,
        **kwargs,
    )


def props_of(emulator, value="1", group_type="account"):
    return emulator.groups().get(group_type, {}).get(value)


# -- success --------------------------------------------------------------------------------------


def test_single_object_succeeds_with_plain_text_success(emulator):
    r = post(emulator, ident(props={"name": "Acme", "employees": 12, "active": True}))
    assert r.status_code == 200
    assert r.text == "success"
    assert r.headers["Content-Type"].startswith("text/plain")
    assert emulator.groups() == {"account": {"1": {"name": "Acme", "employees": 12, "active": True}}}
    (entry,) = emulator.requests
    assert entry["status"] == 200
    assert entry["identifications"] == 1
    assert entry["properties"] == 3
    assert entry["error"] is None
    assert entry["api_key_valid"] is True
    assert entry["content_type"] == FORM
    assert entry["body_bytes"] > 0
    assert entry["latency"] >= 0


def test_array_and_charset_parameter_accepted(emulator):
    body = urllib.parse.urlencode(
        {"api_key": API_KEY, "identification": json.dumps([ident("1"), ident("2")])}
    )
    r = post_raw(emulator, body, content_type=f"{FORM}; charset=UTF-8")
    assert r.status_code == 200
    assert set(emulator.groups()["account"]) == {"1", "2"}


def test_eu_style_trailing_slash_path_is_the_same_endpoint(emulator):
    body = urllib.parse.urlencode({"api_key": API_KEY, "identification": json.dumps(ident())})
    r = requests.post(
        emulator.url + "/groupidentify/",
        data=body,
        headers={"Content-Type": FORM},
        verify=str(emulator.ca_path),
        timeout=10,
    )
    assert r.status_code == 200


def test_unknown_identification_keys_are_warnings(emulator):
    r = post(emulator, [ident(library="segment", colour="blue")])
    assert r.status_code == 200
    (entry,) = emulator.requests
    assert entry["warnings"] == ["unknown key 'colour' in identification 0"]


# -- transport rejections ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "multipart/form-data; boundary=x", "text/plain", None],
)
def test_wrong_content_type_is_400(emulator, content_type):
    body = json.dumps({"api_key": API_KEY, "identification": [ident()]})
    r = post_raw(emulator, body, content_type=content_type)
    assert r.status_code == 400
    assert r.text.startswith("invalid content type")
    assert emulator.groups() == {}


def test_json_body_sent_by_requests_is_400(emulator):
    r = requests.post(
        emulator.url + "/groupidentify",
        json={"api_key": API_KEY, "identification": [ident()]},
        verify=str(emulator.ca_path),
        timeout=10,
    )
    assert r.status_code == 400


def test_parameters_in_query_string_are_400(emulator):
    r = requests.post(
        emulator.url + "/groupidentify",
        params={"api_key": API_KEY},
        data={"identification": json.dumps(ident())},
        verify=str(emulator.ca_path),
        timeout=10,
    )
    assert r.status_code == 400
    assert "belong in the body" in r.text


def test_get_is_405_and_unknown_path_is_404(emulator):
    get = requests.get(emulator.url + "/groupidentify", verify=str(emulator.ca_path), timeout=10)
    assert get.status_code == 405
    assert get.headers["Allow"] == "POST"
    other = requests.post(emulator.url + "/identify", verify=str(emulator.ca_path), timeout=10)
    assert other.status_code == 404


@pytest.mark.parametrize("api_key", [None, "", SECRET_BAD_KEY])
def test_missing_or_unknown_api_key_is_400_invalid_api_key(emulator, api_key):
    r = post(emulator, [ident()], api_key=api_key)
    assert r.status_code == 400
    assert r.text == "invalid_api_key"
    assert emulator.requests[0]["api_key_valid"] is False
    assert emulator.groups() == {}


@pytest.mark.parametrize(
    "identification",
    [None, "", "not json", "{'single': 'quotes'}", "[]", '"a string"', "42", '[{"x": NaN}]'],
)
def test_missing_or_unparseable_identification_is_400_missing_event(emulator, identification):
    r = post(emulator, identification)
    assert r.status_code == 400
    assert r.text == "missing_event"
    assert emulator.requests[0]["error"].startswith("missing_event")


def test_duplicate_parameter_is_400(emulator):
    body = urllib.parse.urlencode([("api_key", API_KEY), ("identification", "[]"), ("identification", "[]")])
    r = post_raw(emulator, body)
    assert r.status_code == 400
    assert "duplicate parameter 'identification'" in r.text


# -- limits ---------------------------------------------------------------------------------------


def body_of_size(size: int) -> bytes:
    """A valid form body of exactly ``size`` encoded bytes (one long, truncated string)."""

    def encode(pad: int) -> bytes:
        payload = json.dumps([ident(props={"blob": "a" * pad})])
        return urllib.parse.urlencode({"api_key": API_KEY, "identification": payload}).encode()

    base = len(encode(0))
    body = encode(size - base)
    assert len(body) == size
    return body


def test_body_of_exactly_1_000_000_bytes_is_accepted(emulator):
    r = post_raw(emulator, body_of_size(1_000_000))
    assert r.status_code == 200
    assert emulator.requests[0]["body_bytes"] == 1_000_000
    assert len(props_of(emulator)["blob"]) == 1024


def test_body_one_byte_over_is_413_json(emulator):
    r = post_raw(emulator, body_of_size(1_000_001))
    assert r.status_code == 413
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"code": 413, "error": "Payload too large"}
    assert emulator.groups() == {}
    assert emulator.requests[0]["body_bytes"] == 1_000_001


def test_oversized_chunked_body_is_413(emulator):
    body = body_of_size(1_200_000)
    chunks = (body[i : i + 100_000] for i in range(0, len(body), 100_000))
    r = post_raw(emulator, chunks)
    assert r.status_code == 413
    assert emulator.groups() == {}


def test_1024_identifications_accepted_1025_rejected(emulator):
    batch = [ident(str(i), {"n": i}) for i in range(1024)]
    assert post(emulator, batch).status_code == 200
    assert len(emulator.groups()["account"]) == 1024

    emulator.reset()
    r = post(emulator, [ident(str(i), {}) for i in range(1025)])
    assert r.status_code == 400
    assert r.text == "too many identifications: 1025 (limit 1024)"
    assert emulator.groups() == {}


def test_1024_properties_accepted_1025_rejected_counting_inside_operations(emulator):
    # 1000 plain properties + 20 in $set + 4 in $unset = 1024, spread over identifications.
    ok = [
        ident("a", {f"p{i}": i for i in range(1000)}),
        ident("b", {"$set": {f"s{i}": i for i in range(20)}, "$unset": {f"u{i}": "-" for i in range(4)}}),
    ]
    assert post(emulator, ok).status_code == 200
    assert emulator.requests[0]["properties"] == 1024

    ok[1]["group_properties"]["$unset"]["u4"] = "-"
    r = post(emulator, ok)
    assert r.status_code == 400
    assert r.text == "too many group properties: 1025 (limit 1024)"
    assert emulator.requests[1]["properties"] == 1025


def test_property_count_includes_every_operation(emulator):
    r = post(emulator, [ident(props={"$set": {"a": 1, "b": 2, "c": 3}, "$unset": {"d": "-", "e": "-"}})])
    assert r.status_code == 200
    assert emulator.requests[0]["properties"] == 5


def test_group_value_of_1024_chars_ok_1025_rejected(emulator):
    assert post(emulator, [ident("v" * 1024)]).status_code == 200
    r = post(emulator, [ident("v" * 1025)])
    assert r.status_code == 400
    assert r.text == "invalid group_value: longer than 1024 characters in identification 0"


def test_depth_40_ok_41_rejected(emulator):
    def nested(depth):
        value: object = "leaf"
        for _ in range(depth):
            value = {"k": value}
        return value

    assert post(emulator, [ident(props={"deep": nested(40)})]).status_code == 200
    r = post(emulator, [ident(props={"deep": nested(41)})])
    assert r.status_code == 400
    assert "depth over 40" in r.text


# -- identification validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("not an object", "invalid identification: not a JSON object in identification 1"),
        ({"group_value": "1", "group_properties": {}}, "invalid group_type: missing or not a string"),
        (ident(group_type=""), "invalid group_type: empty string"),
        (ident(value=""), "invalid group_value: empty string"),
        (ident(value=123), "invalid group_value: missing or not a string"),
        ({"group_type": "t", "group_value": "1"}, "invalid group_properties: missing"),
        (ident(props=["a"]), "invalid group_properties: not an object"),
        (ident(props={"$set": {"a": 1}, "b": 2}), "mixes operations and plain properties"),
        (ident(props={"x": None}), "invalid group_properties: null value for 'x' in identification 1"),
        (ident(props={"$set": {"o": {"p": None}}}), "null value for 'o.p'"),
        (ident(props={"l": [1, None]}), "null value for 'l[1]'"),
        (ident(props={"$unset": {"x": None}}), "null value for 'x'"),
        (ident(props={"l": [1, [2]]}), "nested array in 'l'"),
        (ident(props={"$add": {"n": 1}}), "operation '$add' is not emulated"),
        (ident(props={"$setOnce": {"n": 1}}), "operation '$setOnce' is not emulated"),
        (ident(props={"$remove": {"n": 1}}), "unknown operation '$remove'"),
        (ident(props={"$set": ["a"]}), "'$set' must be an object"),
        (ident(props={"$set": {"a": 1}, "$unset": {"a": "-"}}), "'a' used in more than one operation"),
        (ident(props={"": 1}), "empty property name"),
    ],
)
def test_invalid_identification_rejects_whole_request(emulator, bad, message):
    r = post(emulator, [ident("ok"), bad, ident("also-ok")])
    assert r.status_code == 400
    assert message in r.text
    assert "identification 1" in r.text
    assert emulator.groups() == {}  # atomic: the valid neighbours were not applied
    assert emulator.requests[0]["error"] == r.text
    assert emulator.metrics()["rejected"] == 1


def test_set_overwrites_and_plain_dict_means_set(emulator):
    post(emulator, [ident(props={"a": 1, "b": "x"})])
    post(emulator, [ident(props={"$set": {"a": 2}})])
    assert props_of(emulator) == {"a": 2, "b": "x"}


def test_unset_deletes(emulator):
    post(emulator, [ident(props={"a": 1, "b": 2, "c": 3})])
    post(emulator, [ident(props={"$unset": {"a": "-", "missing": "-"}})])
    assert props_of(emulator) == {"b": 2, "c": 3}


def test_identifications_apply_in_order(emulator):
    post(emulator, [ident(props={"a": 1}), ident(props={"a": 2}), ident(props={"$unset": {"a": "-"}})])
    assert props_of(emulator) == {}
    post(emulator, [ident(props={"$unset": {"a": "-"}}), ident(props={"a": 3})])
    assert props_of(emulator) == {"a": 3}


def test_objects_and_arrays_of_objects_are_stored(emulator):
    value = {"address": {"city": "Paris", "tags": ["a", "b"]}, "contacts": [{"n": 1}, {"n": 2}]}
    assert post(emulator, [ident(props=value)]).status_code == 200
    assert props_of(emulator) == value


# -- project limits Amplitude applies silently -----------------------------------------------------


def test_long_strings_are_truncated_and_counted(emulator):
    props = {
        "exact": "e" * 1024,
        "long": "l" * 1025,
        "nested": {"deep": ["d" * 3000, "short"]},
    }
    assert post(emulator, [ident(props=props)]).status_code == 200
    stored = props_of(emulator)
    assert stored["exact"] == "e" * 1024
    assert stored["long"] == "l" * 1024
    assert stored["nested"]["deep"] == ["d" * 1024, "short"]
    assert emulator.metrics()["truncated_strings"] == 2


def test_sixth_group_type_is_accepted_but_dropped(emulator):
    types = [f"type{i}" for i in range(6)]
    r = post(emulator, [ident("1", {"a": 1}, group_type=t) for t in types])
    assert r.status_code == 200
    assert r.text == "success"
    assert sorted(emulator.groups()) == types[:5]
    metrics = emulator.metrics()
    assert metrics["dropped_group_types"] == 1
    assert metrics["dropped_group_type_names"] == ["type5"]
    assert metrics["dropped_identifications"] == 1
    assert metrics["identifications_applied"] == 5
    assert "dropped" in emulator.requests[0]["warnings"][0]
    # Known types keep working; the dropped one stays dropped.
    assert post(emulator, [ident("2", {"b": 1}, group_type="type0"), ident("3", group_type="type5")]).ok
    assert "2" in emulator.groups("type0")["type0"]
    assert emulator.groups("type5") == {}
    assert emulator.metrics()["dropped_identifications"] == 2


def test_properties_past_project_limit_are_stored_but_not_indexed(emulator):
    many = {f"p{i:04d}": i for i in range(1001)}
    assert post(emulator, [ident(props=many)]).status_code == 200
    assert len(props_of(emulator)) == 1001
    metrics = emulator.metrics()
    assert metrics["unindexed_properties"] == 1
    assert metrics["unindexed_property_names"] == ["p1000"]


# -- faults ---------------------------------------------------------------------------------------


def test_429_without_retry_after(emulator):
    emulator.faults.add(Fault(status=429))
    r = post(emulator, [ident()])
    assert r.status_code == 429
    assert "Retry-After" not in r.headers
    assert r.json() == {"code": 429, "error": "Too many requests for some devices and users"}
    assert emulator.groups() == {}
    entry = emulator.requests[0]
    assert entry["fault"] == "429"
    assert entry["identifications"] == 1
    assert emulator.metrics()["throttled"] == 1
    assert post(emulator, [ident()]).status_code == 200  # the fault was used up


def test_429_with_retry_after(emulator):
    emulator.faults.add(Fault(status=429, headers={"Retry-After": "3"}, count=2))
    assert [post(emulator, [ident()]).headers.get("Retry-After") for _ in range(3)] == ["3", "3", None]
    assert emulator.metrics()["throttled"] == 2


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_apply_nothing_and_are_logged(emulator, status):
    emulator.faults.add(Fault(status=status))
    r = post(emulator, [ident()])
    assert r.status_code == status
    assert emulator.groups() == {}
    (entry,) = emulator.requests
    assert entry["status"] == status
    assert entry["applied"] is False
    assert emulator.metrics()["server_errors"] == 1


def test_body_429_is_http_200_with_nothing_applied(emulator):
    emulator.faults.add(Fault(kind="body_429"))
    r = post(emulator, [ident()])
    assert r.status_code == 200
    assert r.json()["code"] == 429
    assert emulator.groups() == {}
    assert emulator.metrics()["throttled"] == 1
    assert emulator.metrics()["accepted"] == 0


def test_delay_alone_is_a_slow_success(emulator):
    emulator.faults.add(Fault(delay=0.3))
    start = time.monotonic()
    r = post(emulator, [ident()])
    assert r.status_code == 200
    assert time.monotonic() - start >= 0.3
    assert emulator.requests[0]["latency"] >= 0.3
    assert props_of(emulator) == {"name": "Acme"}


def test_long_delay_times_the_client_out(emulator):
    emulator.faults.add(Fault(status=503, delay=0.8))
    with pytest.raises(requests.Timeout):
        post(emulator, [ident()], timeout=0.2)
    # Wait for the server side to finish so it does not spill into the next test.
    deadline = time.monotonic() + 5
    while not emulator.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert emulator.requests[0]["status"] == 503
    assert emulator.groups() == {}


def test_disconnect_fault_resets_the_connection(emulator):
    emulator.faults.add(Fault(kind="disconnect"))
    with pytest.raises(requests.ConnectionError):
        post(emulator, [ident()])
    assert emulator.groups() == {}
    assert emulator.requests[0]["status"] is None
    assert emulator.metrics()["disconnected"] == 1


def test_fault_path_filter(emulator):
    emulator.faults.add(Fault(status=503, path="/elsewhere"))
    assert post(emulator, [ident()]).status_code == 200
    assert len(emulator.faults.pending()) == 1


def test_faults_through_admin_endpoint_and_admin_bypasses_faults(emulator):
    r = admin(emulator, "POST", "faults", json=[{"status": 503, "count": 2}, {"kind": "body_429"}])
    assert r.status_code == 200
    assert len(r.json()) == 2
    # Admin calls do not consume faults.
    assert admin(emulator, "GET", "metrics").status_code == 200
    statuses = [post(emulator, [ident()]).status_code for _ in range(4)]
    assert statuses == [503, 503, 200, 200]
    assert emulator.metrics()["throttled"] == 1  # the 200 carrying code 429
    assert emulator.metrics()["accepted"] == 1


@pytest.mark.parametrize(
    "bad",
    [{"status": "503"}, {"count": 0}, {"kind": "explode"}, {"delay": -1}, {"surprise": 1}, "x"],
)
def test_admin_rejects_malformed_faults(emulator, bad):
    r = admin(emulator, "POST", "faults", json=bad)
    assert r.status_code == 400
    assert emulator.faults.pending() == []


def test_token_bucket_rate_limit(emulator):
    emulator.set_rate_limit(10)
    assert post(emulator, [ident(str(i)) for i in range(10)]).status_code == 200
    r = post(emulator, [ident("late")])
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "1"
    assert r.json()["code"] == 429
    assert "late" not in emulator.groups()["account"]
    time.sleep(0.25)  # refills ~2.5 tokens
    assert post(emulator, [ident("later")]).status_code == 200
    assert emulator.metrics()["throttled"] == 1
    emulator.set_rate_limit(None)
    assert post(emulator, [ident(str(i)) for i in range(50)]).status_code == 200


def test_latency_switch_delays_each_request_and_admin_calls_answer_at_once(emulator):
    # Real Amplitude answers in 100-300 ms; the switch makes a benchmark see such round trips.
    emulator.set_latency(0.2, jitter=0.05)
    started = time.monotonic()
    assert post(emulator, [ident("slow")]).status_code == 200
    assert time.monotonic() - started >= 0.15  # a lower bound: the sleep guarantees it
    assert emulator.requests[-1]["latency"] >= 0.15
    assert emulator.metrics()["latency"] == {"seconds": 0.2, "jitter": 0.05}
    assert admin(emulator, "POST", "latency", json={"seconds": 0.1}).json() == {"seconds": 0.1, "jitter": 0.0}
    assert admin(emulator, "POST", "latency", json={"seconds": -1}).status_code == 400
    emulator.reset()
    assert emulator.metrics()["latency"] == {"seconds": 0.0, "jitter": 0.0}


def test_latency_jitter_spreads_delays_evenly_around_the_mean():
    import random

    from emulators._server import Latency

    rng = random.Random(1)
    draws = [Latency(0.15, 0.05).draw(rng) for _ in range(2000)]
    assert min(draws) >= 0.1 and max(draws) <= 0.2
    assert abs(sum(draws) / len(draws) - 0.15) < 0.005
    assert Latency(0.01, 0.05).draw(rng) >= 0.0  # never negative
    assert Latency(0.3).draw(rng) == 0.3
    with pytest.raises(ValueError, match="non-negative"):
        Latency(float("nan"))


def test_admin_rate_limit_endpoint(emulator):
    assert admin(emulator, "POST", "rate-limit", json={"identifications_per_second": 1}).ok
    assert emulator.metrics()["rate_limit"] == 1
    assert admin(emulator, "POST", "rate-limit", json={"identifications_per_second": -1}).status_code == 400


# -- concurrency, logging, admin ------------------------------------------------------------------


def test_concurrent_posts_keep_state_consistent(emulator):
    threads_n, per_thread = 8, 20
    barrier = threading.Barrier(threads_n)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(n):
        barrier.wait()
        for i in range(per_thread):
            batch = [ident("shared", {"$set": {f"t{n}": i}}), ident(f"t{n}", {"$set": {"last": i}})]
            status = post(emulator, batch).status_code
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert statuses == [200] * threads_n * per_thread
    groups = emulator.groups()["account"]
    assert groups["shared"] == {f"t{n}": per_thread - 1 for n in range(threads_n)}
    assert all(groups[f"t{n}"] == {"last": per_thread - 1} for n in range(threads_n))
    metrics = emulator.metrics()
    assert metrics["accepted"] == metrics["requests"] == threads_n * per_thread
    assert len(emulator.requests) == threads_n * per_thread


def test_api_key_is_never_logged(emulator, capfd):
    post(emulator, [ident()], api_key=API_KEY)
    post(emulator, [ident()], api_key=SECRET_BAD_KEY)
    emulator.faults.add(Fault(status=503))
    post(emulator, [ident()], api_key=SECRET_BAD_KEY)
    post_raw(emulator, f"api_key={SECRET_BAD_KEY}&identification=oops")
    logged = json.dumps(emulator.requests) + admin(emulator, "GET", "requests").text
    assert API_KEY not in logged
    assert SECRET_BAD_KEY not in logged
    assert [e["api_key_valid"] for e in emulator.requests] == [True, False, False, False]
    out, err = capfd.readouterr()
    assert SECRET_BAD_KEY not in out + err
    assert API_KEY not in out + err


def test_request_log_keeps_payload_for_assertions(emulator):
    batch = [ident(props={"$set": {"a": 1}, "$unset": {"b": "-"}})]
    post(emulator, batch)
    assert emulator.requests[0]["payload"] == batch


def test_admin_endpoints(emulator):
    post(emulator, [ident("1", {"a": 1}), ident("9", {"b": 2}, group_type="region")])
    assert admin(emulator, "GET", "groups").json() == emulator.groups()
    assert admin(emulator, "GET", "groups", params={"group_type": "region"}).json() == {
        "region": {"9": {"b": 2}}
    }
    assert admin(emulator, "GET", "groups", params={"group_type": "nope"}).json() == {}
    assert admin(emulator, "GET", "requests").json()[0]["status"] == 200
    assert admin(emulator, "GET", "metrics").json()["accepted"] == 1
    assert admin(emulator, "GET", "reset").status_code == 405
    assert admin(emulator, "GET", "nothing").status_code == 404
    assert admin(emulator, "POST", "reset").json() == {"reset": True}
    assert emulator.groups() == {}
    assert emulator.requests == []
    assert emulator.metrics()["requests"] == 0


def test_groups_returns_copies(emulator):
    post(emulator, [ident(props={"l": [1]})])
    emulator.groups()["account"]["1"]["l"].append(2)
    assert props_of(emulator) == {"l": [1]}


# -- command line ---------------------------------------------------------------------------------


def test_cli_serves_until_sigterm(tmp_path: Path):
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulators.amplitude", "--port", "0", "--ca-dir", str(tmp_path)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split()[2]
        assert url.endswith("/groupidentify")
        assert (tmp_path / "ca.pem").exists()
        r = requests.post(
            url,
            data={"api_key": API_KEY, "identification": json.dumps(ident())},
            verify=str(tmp_path / "ca.pem"),
            timeout=10,
        )
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)  # waits, and closes the pipes
    assert proc.returncode == 0
