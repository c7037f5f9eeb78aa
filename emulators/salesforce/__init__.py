"""A Salesforce REST API emulator.

OAuth and SOAP login, describe, SOQL query/queryAll with paging, Bulk API 2.0 query jobs, API usage limits,
injected faults and an admin API, over HTTPS on loopback. It serves what the tap sends and refuses the rest
(see emulators/README.md).

It follows the contract in ``docs/reference/salesforce-api.md`` (c): the same JSON shapes, error
codes and messages, headers (``Sforce-Limit-Info``) and paging (``nextRecordsUrl``). The org
holds Account, User, Subscription__c, Document, Case and Wide__c rows generated
deterministically from a seed, and lists the non-queryable AggregateResult type.

    with SalesforceEmulator(accounts=1000) as sf:
        token = requests.post(f"{sf.url}/services/oauth2/token", data={...}, verify=sf.ca_path)
"""

from .app import FAULT_KINDS, SalesforceEmulator
from .credentials import (
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    REFRESH_TOKEN,
    SECURITY_TOKEN,
    USERNAME,
)
from .data import Org
from .errors import ApiError
from .schema import API_VERSIONS, LATEST_VERSION, ORG_ID

__all__ = [
    "API_VERSIONS",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "FAULT_KINDS",
    "LATEST_VERSION",
    "ORG_ID",
    "PASSWORD",
    "REFRESH_TOKEN",
    "SECURITY_TOKEN",
    "USERNAME",
    "ApiError",
    "Org",
    "SalesforceEmulator",
]
