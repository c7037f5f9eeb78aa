"""The /groupidentify HTTP client: form-encoded requests, retries, throttling, split and bisect."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import backoff
import requests
from requests.adapters import HTTPAdapter

from target_amplitude_groups.batching import Request

REGION_URLS = {
    "us": "https://api2.amplitude.com/groupidentify",
    "eu": "https://api.eu.amplitude.com/groupidentify",
}


# Amplitude's wording: "invalid_api_key" (/groupidentify) or "Invalid API key: …" (HTTP V2).
_INVALID_KEY = re.compile(r"invalid[ _]api[ _]key", re.IGNORECASE)
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


class AmplitudeError(Exception):
    """Delivery failed for good; the message says why (and never contains the API key)."""


class InvalidApiKey(AmplitudeError):
    """Amplitude refused the API key: nothing can be sent."""


@dataclass
class RunStats:
    """What the run did, for the summary line and the run report."""

    groups_sent: int = 0
    requests: int = 0
    retries: int = 0
    throttled_seconds: float = 0.0
    skipped: int = 0
    rejected: int = 0
    deleted_ignored: int = 0
    truncated: int = 0

    def add(self, **counts: float) -> None:
        with _STATS_LOCK:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["throttled_seconds"] = round(self.throttled_seconds, 3)
        return data


_STATS_LOCK = threading.Lock()


class _Retryable(Exception):
    def __init__(self, reason: str, wait: float | None = None, throttled: bool = False) -> None:
        super().__init__(reason)
        self.wait = wait
        self.throttled = throttled


class _Rejected(Exception):
    """HTTP 400 for this request: some identification in it is bad."""


class _TooLarge(Exception):
    """HTTP 413 for this request."""


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _json_code(response: requests.Response) -> int | None:
    """The ``code`` of a JSON body, e.g. a 2xx that still says ``"code": 429``."""
    if "json" not in response.headers.get("Content-Type", "") and not response.text.startswith("{"):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


class AmplitudeClient:
    """Sends packed requests concurrently; STATE safety comes from raising on final failure."""

    def __init__(
        self,
        *,
        api_url: str,
        api_key: str,
        stats: RunStats,
        max_concurrency: int = 4,
        max_retries: int = 8,
        request_timeout: float = 30.0,
        max_backoff: float = 60.0,
        on_rejected: Callable[[dict[str, Any], int, str], None] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.api_url = api_url
        self._api_key = api_key
        self.stats = stats
        self.max_concurrency = max(1, max_concurrency)
        self.max_retries = max_retries
        self.timeout = request_timeout
        self.max_backoff = max_backoff
        self.on_rejected = on_rejected
        self.logger = logger or logging.getLogger(__name__)
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self.max_concurrency)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    # -- one HTTP exchange -----------------------------------------------------------------
    def _post(self, request: Request) -> None:
        """One POST; raises a classified exception unless Amplitude accepted it."""
        try:
            response = self.session.post(
                self.api_url, data=request.body(self._api_key), headers=FORM_HEADERS, timeout=self.timeout
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Retryable(exc.__class__.__name__) from exc
        finally:
            self.stats.add(requests=1)
        status = response.status_code
        body = response.text[:500]
        if 200 <= status < 300:
            if _json_code(response) == 429:  # throttled, though the status says otherwise
                raise _Retryable("HTTP 200 with code 429", _retry_after(response), throttled=True)
            return
        if status == 429:
            raise _Retryable("HTTP 429", _retry_after(response), throttled=True)
        if status >= 500:
            raise _Retryable(f"HTTP {status}", _retry_after(response))
        if status == 413:
            raise _TooLarge(body)
        if status == 400 and _INVALID_KEY.search(body):
            raise InvalidApiKey(f"Amplitude rejected the API key (HTTP 400: {body.strip()}); check api_key")
        if status == 400:
            raise _Rejected(body.strip())
        raise AmplitudeError(f"Amplitude answered HTTP {status} to {self.api_url}: {body.strip()}")

    def _post_with_retries(self, request: Request) -> None:
        """Retry throttling and transient failures with exponential backoff and full jitter."""
        delays = backoff.expo(base=2, factor=1, max_value=self.max_backoff)
        next(delays)  # backoff's wait generators yield a primer first
        for attempt in range(self.max_retries + 1):
            try:
                self._post(request)
                return
            except _Retryable as exc:
                if attempt == self.max_retries:
                    raise AmplitudeError(
                        f"gave up after {attempt + 1} attempts ({exc}) sending {len(request.items)} "
                        f"groups to {self.api_url}"
                    ) from exc
                wait = exc.wait if exc.wait is not None else backoff.full_jitter(next(delays))
                self.stats.add(retries=1, **({"throttled_seconds": wait} if exc.throttled else {}))
                self.logger.warning("Amplitude %s; retrying in %.1fs", exc, wait)
                time.sleep(wait)

    # -- delivery of a request, splitting as Amplitude asks --------------------------------
    def deliver(self, request: Request) -> None:
        """Deliver every identification of the request, or raise; bad ones go to on_rejected."""
        try:
            self._post_with_retries(request)
        except _TooLarge:
            if len(request.items) == 1:
                self._reject(request, 413, "payload too large")
                return
            for half in request.split():
                self.deliver(half)
            return
        except _Rejected as exc:
            if len(request.items) == 1:
                self._reject(request, 400, str(exc))
                return
            # Amplitude gives no per-item errors: bisect to isolate the bad identifications.
            for half in request.split():
                self.deliver(half)
            return
        self.stats.add(groups_sent=len(request.items))

    def _reject(self, request: Request, status: int, reason: str) -> None:
        identification = request.items[0].identification
        self.stats.add(rejected=1)
        self.logger.warning(
            "Amplitude rejected group %r of type %r (HTTP %s): %s",
            identification["group_value"],
            identification["group_type"],
            status,
            reason,
        )
        if self.on_rejected is not None:
            self.on_rejected(identification, status, reason)

    def deliver_all(self, requests_: list[Request]) -> None:
        """Deliver requests concurrently (up to max_concurrency); raise the first failure."""
        if len(requests_) <= 1 or self.max_concurrency == 1:
            for request in requests_:
                self.deliver(request)
            return
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            # list() waits for all and re-raises the first failure here, in the sink's thread.
            list(pool.map(self.deliver, requests_))


class BackgroundSender:
    """Sends one batch's requests while the next batch is being built.

    At most one batch is in flight: ``submit`` first waits for the previous one, and ``wait``
    (called before any STATE is written) re-raises its failure, so STATE still follows
    acknowledgement of every earlier record.
    """

    def __init__(self, client: AmplitudeClient) -> None:
        self.client = client
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="amplitude-sender")
        self._lock = threading.Lock()
        self._pending: Future[None] | None = None

    def submit(self, requests_: list[Request]) -> None:
        with self._lock:
            self._wait_locked()
            self._pending = self._pool.submit(self.client.deliver_all, requests_)

    def wait(self) -> None:
        """Block until the batch in flight is acknowledged; raise what it raised."""
        with self._lock:
            self._wait_locked()

    def _wait_locked(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()


def dump_request(request: Request) -> str:
    """One dry-run line: the request as it would be sent, without the API key."""
    return json.dumps({"identification": json.loads(request.identification_param)}, ensure_ascii=False)
