"""Both emulators keep HTTP/1.1 connections open between requests, as the real services do.

Persistent connections are HTTP/1.1's default (RFC 9112, section 9.3: "HTTP/1.1 defaults to the
use of persistent connections"), and neither Salesforce nor Amplitude answers with
``Connection: close``. A server that closes every connection makes each request pay a TCP and
TLS handshake on both sides, which the pipeline never pays against the real services, so the
benchmarks would measure handshakes (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import logging

import pytest
import requests

from emulators._server import LocalCA
from emulators.amplitude import API_KEY, AmplitudeEmulator
from emulators.salesforce import SalesforceEmulator


def _connections_opened(caplog: pytest.LogCaptureFixture) -> int:
    """Connections urllib3 opened (it logs each one at DEBUG)."""
    return sum(1 for r in caplog.records if r.getMessage().startswith("Starting new HTTPS connection"))


def test_amplitude_keeps_the_connection_open(
    amplitude: AmplitudeEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="urllib3")
    url = amplitude.url + "/groupidentify"
    identification = json.dumps([{"group_type": "org", "group_value": "1", "group_properties": {"a": 1}}])
    with requests.Session() as session:
        for _ in range(5):
            answer = session.post(url, data={"api_key": API_KEY, "identification": identification})
            assert answer.status_code == 200
            assert answer.headers.get("Connection", "").lower() != "close"
    assert _connections_opened(caplog) == 1
    assert len(amplitude.requests) == 5


def test_amplitude_answers_413_on_a_kept_connection_after_reading_the_body(
    amplitude: AmplitudeEmulator,
) -> None:
    # The oversized body is read before the answer (as a front server's lingering close does),
    # so the client sees the 413 rather than a reset while it is still sending.
    url = amplitude.url + "/groupidentify"
    body = "api_key=" + API_KEY + "&identification=" + "x" * 1_000_001
    with requests.Session() as session:
        answer = session.post(url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 413
        assert answer.json() == {"code": 413, "error": "Payload too large"}


def test_salesforce_keeps_the_connection_open(
    salesforce: SalesforceEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="urllib3")
    url = salesforce.url + "/services/data/v62.0/limits"
    with requests.Session() as session:
        for _ in range(4):
            assert session.get(url).status_code == 401  # no session: INVALID_SESSION_ID
    assert _connections_opened(caplog) == 1


def test_stop_closes_open_connections() -> None:
    # A stopped emulator must not go on answering on connections a client kept open: tests
    # stop one to simulate an outage.
    authority = LocalCA()
    emulator = AmplitudeEmulator(ca=authority).start()
    url = emulator.url + "/groupidentify"
    ca = str(authority.ca_path)
    with requests.Session() as session:
        data = {"api_key": API_KEY, "identification": "[]"}
        assert session.post(url, data=data, verify=ca).status_code == 400  # no identification
        emulator.stop()
        try:
            session.post(url, data=data, verify=ca, timeout=5)
        except requests.ConnectionError:
            pass
        else:
            raise AssertionError("a stopped emulator answered on a kept connection")
        finally:
            authority.close()
