"""What can go wrong talking to Salesforce, as the tap tells it apart."""

from __future__ import annotations


class SalesforceClientError(Exception):
    """A Salesforce failure the run cannot recover from; the message says what and where."""


class SalesforceAuthError(SalesforceClientError):
    """Login failed (bad or missing credentials, blocked flow, unusable key)."""


class StopRun(SalesforceClientError):
    """Stop reading, keep the state of what was emitted: the org's limit or our budget."""

    failed = True
    exit_code = 1


class RequestLimitExceeded(StopRun):
    """The org's API request limit is exhausted (REQUEST_LIMIT_EXCEEDED)."""


class ApiBudgetReached(StopRun):
    """The org's daily API usage reached ``max_api_usage_percent``: exit 75 (EX_TEMPFAIL)."""

    failed = False
    exit_code = 75


class QueryTooBig(SalesforceClientError):
    """The org gave up on a query (QUERY_TIMEOUT) or a Bulk job failed: read a smaller window."""


class QueryCursorExpired(SalesforceClientError):
    """The server forgot a query cursor (INVALID_QUERY_LOCATOR); re-query from the bookmark."""


class BulkNotSupported(SalesforceClientError):
    """Bulk API 2.0 refuses to query this object (INVALIDENTITY); REST may still read it."""


class RunStopped(Exception):
    """The sync ended early, its state written: the one line to log and the exit status it earns."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
