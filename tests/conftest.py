"""Session-wide emulators for the in-process tap and target tests.

One CA for both, set in REQUESTS_CA_BUNDLE once, as a deployment would. They start at import
because the SDK's standard test classes need the URLs when they are built.
"""

from __future__ import annotations

import os

from emulators._server import LocalCA
from emulators.amplitude import AmplitudeEmulator
from emulators.salesforce import SalesforceEmulator

CA = LocalCA()
# Small pages so that paging is exercised.
SALESFORCE = SalesforceEmulator(ca=CA, accounts=300, page_size=200).start()
AMPLITUDE = AmplitudeEmulator(ca=CA).start()
os.environ["REQUESTS_CA_BUNDLE"] = str(CA.ca_path)


def pytest_sessionfinish() -> None:
    SALESFORCE.stop()
    AMPLITUDE.stop()
