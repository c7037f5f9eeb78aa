"""The /groupidentify HTTP client: one exchange, its classification, retries, split and bisect.

Amplitude's Group Identify API (https://amplitude.com/docs/apis/analytics/group-identify):
form-encoded ``api_key`` + ``identification``; ``200`` with the body ``success`` is the only
acknowledgement; 413 means too large; 400 is a bad request with no per-item detail; 429 and
5xx are transient. README.md ("What happens to the data", Failures) says how each answer is handled.
"""

from __future__ import annotations

import errno
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import backoff
import requests
from requests.adapters import HTTPAdapter

from target_amplitude_groups.batching import Request
from target_amplitude_groups.errors import AmplitudeError, InvalidApiKey, Stopped, Unreachable
from target_amplitude_groups.stats import RunStats

REGION_URLS = {
    "us": "https://api2.amplitude.com/groupidentify",
    "eu": "https://api.eu.amplitude.com/groupidentify",
}
SUCCESS_BODY = "success"  # Amplitude's documented answer to an accepted request

# Amplitude's wording: "invalid_api_key" (/groupidentify) or "Invalid API key: …" (HTTP V2).
_INVALID_KEY = re.compile(r"invalid[ _]api[ _]key", re.IGNORECASE)
RETRY_AFTER_SPREAD = 0.25
# Successes (in round trips' worth: times the limit) before the concurrency grows by one. One,
# as TCP grows, probes a token bucket like Amplitude's again within a few round trips, so it
# throttles again and again: simulated against a bucket of one second's worth at 3,000 groups/s
# (make bench's throttled run), one gave about 120 429s per 100,000 groups, eight about 25, for
# the same wall time within 1%.
GROWTH_ROUND_TRIPS = 8
# Below the limit that was last throttled, the concurrency comes back faster: that level was
# fine until just before. Reaching it again, and going past it, is what probes the rate limit, so
# that is where growth stays slow (as TCP CUBIC grows slowly near its last loss).
RECOVERY_ROUND_TRIPS = 2
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


@dataclass(frozen=True)
class Rejection:
    """One identification Amplitude refused on its own, with the answer that refused it."""

    identification: dict[str, Any]
    status: int
    reason: str


class _Retryable(Exception):
    def __init__(self, reason: str, wait: float | None = None, throttled: bool = False) -> None:
        super().__init__(reason)
        self.wait = wait
        self.throttled = throttled


class _Refused(Exception):
    """HTTP 400 (or 413) for this request; ``reason`` is Amplitude's answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _json_code(response: requests.Response) -> int | None:
    """The ``code`` of a JSON body, e.g. a 2xx that still says ``"code": 429``."""
    if not response.text.lstrip().startswith("{"):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, int) else None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (requests → urllib3 MaxRetryError → socket error)."""
    todo: list[object] = [exc]
    seen: set[int] = set()
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]


def unfixable_cause(exc: requests.RequestException, host: str) -> str | None:
    """The one-line cause of a connection failure that retrying cannot fix, else None."""
    if isinstance(exc, requests.exceptions.SSLError):
        return (
            f"TLS certificate verification failed for {host} ({_short(exc)}); if it uses a private CA, "
            "point REQUESTS_CA_BUNDLE at the CA's PEM file"
        )
    for cause in _causes(exc):
        name = type(cause).__name__
        if name == "NameResolutionError" or (isinstance(cause, OSError) and cause.errno in (-2, -3, -5)):
            return f"cannot resolve host {host} (DNS lookup failed); check api_url or region"
        if isinstance(cause, ConnectionRefusedError) or (
            isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED
        ):
            return f"connection refused by {host}; check api_url (is the service or proxy running?)"
    return None


def _short(exc: BaseException) -> str:
    text = str(exc)
    match = re.search(r"certificate verify failed: ([^(')]+)", text)
    return match.group(1).strip() if match else type(exc).__name__


class AdaptiveConcurrency:
    """How many requests may be in flight at once, adapted to Amplitude's answers (AIMD).

    As TCP's congestion control does: a throttled answer halves the limit (once per round trip:
    requests already in flight when it fell do not halve it again), and each run of successes
    raises it by one, up to ``maximum``: a run of ``RECOVERY_ROUND_TRIPS`` times as many as the
    limit while it is more than one below the limit last throttled, else ``GROWTH_ROUND_TRIPS``
    times as many. So the limit soon settles just under the rate Amplitude allows and probes past
    it rarely. Several targets sharing one Amplitude project's rate limit so each settle on a share
    of it instead of all retrying at the same pace.
    """

    def __init__(self, maximum: int, on_change: Callable[[int], None] | None = None) -> None:
        self.maximum = maximum
        self.limit = maximum
        self.lowest = maximum
        self.in_flight = 0
        self._on_change = on_change
        self._successes = 0
        self._throttled_at = maximum + 1  # the limit when Amplitude last throttled (none yet: above max)
        self._epoch = 0  # counts decreases; a request remembers the one it was sent in
        self._resume_at = 0.0  # monotonic time before which no request starts (Retry-After)
        self._cond = threading.Condition()

    def acquire(self, stop: threading.Event, failed: threading.Event) -> int:
        """Wait for a free slot (and the end of a pause); return the epoch to hand back to :meth:`release`."""
        with self._cond:
            while True:
                if stop.is_set() or failed.is_set():
                    raise Stopped("stopping: request not sent")
                paused = self._resume_at - time.monotonic()
                if paused <= 0 and self.in_flight < self.limit:
                    break
                self._cond.wait(min(0.1, paused) if paused > 0 else 0.1)
            self.in_flight += 1
            return self._epoch

    def release(
        self, epoch: int, *, throttled: bool = False, succeeded: bool = False, pause: float | None = None
    ) -> None:
        """The request sent in ``epoch`` got its answer: throttled, succeeded, or neither.

        ``pause``: Amplitude's Retry-After with a throttled answer. The first of a round trip
        holds for the whole client: no request starts before it has passed (each throttled
        request itself waits its own, and a little longer, see ``_post_with_retries``). The
        requests already in flight with it, throttled in turn, neither halve the limit again
        nor extend that pause: the bucket behind a rate limit refills meanwhile either way.
        """
        with self._cond:
            self.in_flight -= 1
            before = self.limit
            if throttled:
                self._successes = 0
                if epoch == self._epoch:
                    if pause:
                        self._resume_at = max(self._resume_at, time.monotonic() + pause)
                    self._throttled_at = self.limit
                    self.limit = max(1, self.limit // 2)
                    self.lowest = min(self.lowest, self.limit)
                    self._epoch += 1
            elif succeeded:
                self._successes += 1
                recovering = self.limit + 1 < self._throttled_at
                run = self.limit * (RECOVERY_ROUND_TRIPS if recovering else GROWTH_ROUND_TRIPS)
                if self._successes >= run and self.limit < self.maximum:
                    self.limit += 1
                    self._successes = 0
            self._cond.notify_all()
            changed = self.limit != before
        if changed and self._on_change is not None:
            self._on_change(self.limit)


@dataclass(frozen=True)
class Gate:
    """Holds the requests sent while it is closed, in their own threads.

    They wait until ``before`` were answered and ``opened`` is set (a checkpoint's requests,
    then its STATE written).
    """

    before: tuple[Future[list[Rejection]], ...]
    opened: threading.Event = field(default_factory=threading.Event)
    dropped: threading.Event = field(default_factory=threading.Event)  # never opens: the run stops

    def answered(self) -> bool:
        """Every request it waits for has its answer."""
        return all(f.done() for f in self.before)

    def is_open(self) -> bool:
        """A request sent now does not wait."""
        return self.opened.is_set() and self.answered()


class AmplitudeClient:
    """Sends packed requests; returns the identifications Amplitude rejected on their own.

    Raises :class:`AmplitudeError` when delivery fails for good, so the caller keeps STATE back.
    """

    def __init__(
        self,
        *,
        api_url: str,
        api_key: str,
        stats: RunStats,
        max_concurrency: int,
        max_retries: int,
        request_timeout: float,
        max_backoff: float,
        stop: threading.Event,
        redact: Callable[[str], str],
        logger: logging.Logger,
    ) -> None:
        self.api_url = api_url
        self.host = urlsplit(api_url).netloc
        self._api_key = api_key
        self.stats = stats
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.timeout = request_timeout
        self.max_backoff = max_backoff
        self.stop = stop
        self.redact = redact
        self.logger = logger
        self.acknowledged_once = False
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max_concurrency)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="amplitude")
        self._failed = threading.Event()  # one request failed for good: the others stop too
        self._failure: BaseException | None = None
        self.concurrency = AdaptiveConcurrency(max_concurrency, self._concurrency_changed)
        stats.set(
            concurrency=max_concurrency, lowest_concurrency=max_concurrency, max_concurrency=max_concurrency
        )
        # Requests submitted and not yet answered (queued or in flight): submit() waits while
        # there are twice the concurrency limit, so memory stays bounded and the pool busy.
        self._outstanding = 0
        self._held = 0  # of which a closed gate holds
        self._outstanding_cond = threading.Condition()

    def _concurrency_changed(self, limit: int) -> None:
        self.stats.set(concurrency=limit, lowest_concurrency=self.concurrency.lowest)
        self.logger.info(
            "Concurrency: %s in flight at most (max_concurrency=%s)", limit, self.concurrency.maximum
        )

    # -- one HTTP exchange -----------------------------------------------------------------
    def _post(self, request: Request) -> None:
        """One POST within the concurrency limit; the answer adapts the limit."""
        epoch = self.concurrency.acquire(self.stop, self._failed)
        throttled = succeeded = False
        pause = None
        try:
            self._exchange(request)
            succeeded = True
        except _Retryable as exc:
            throttled, pause = exc.throttled, exc.wait
            raise
        finally:
            self.concurrency.release(epoch, throttled=throttled, succeeded=succeeded, pause=pause)

    def _exchange(self, request: Request) -> None:
        """One POST; returns only when Amplitude acknowledged it, else raises a classified error."""
        try:
            response = self.session.post(
                self.api_url, data=request.body(self._api_key), headers=FORM_HEADERS, timeout=self.timeout
            )
        except requests.RequestException as exc:
            cause = unfixable_cause(exc, self.host)
            # A refused connection after earlier successes is a restart, not a wrong address.
            if cause and not (self.acknowledged_once and "refused" in cause):
                raise Unreachable(cause) from None
            raise _Retryable(exc.__class__.__name__) from None
        finally:
            self.stats.add(requests=1)
        status = response.status_code
        body = self.redact(response.text[:300].strip())
        if 200 <= status < 300:
            code = _json_code(response)
            if code == 429:  # throttled, though the status says otherwise
                raise _Retryable(f"HTTP {status} with code 429", self._wait_for(response), throttled=True)
            if code is not None and code >= 500:
                raise _Retryable(f"HTTP {status} with code {code}", self._wait_for(response))
            # HTTP 200 with "success" (Group Identify), or with the JSON success summary of
            # Amplitude's ingestion host ({"code": 200, ...}, HTTP V2 API). Anything else, another
            # 2xx included (Amplitude documents none), was not Amplitude's acknowledgement.
            if status != 200 or (response.text.strip() != SUCCESS_BODY and code != 200):
                raise AmplitudeError(
                    f"{self.host} answered HTTP {status} without Amplitude's success answer "
                    f"({body[:120]!r}); nothing after the last checkpoint counts as delivered "
                    "(is a proxy or a wrong api_url in the way?)"
                )
            self.acknowledged_once = True
            return
        if status == 429:
            raise _Retryable("HTTP 429", self._wait_for(response), throttled=True)
        if status >= 500 or status in (408, 502, 503, 504):
            raise _Retryable(f"HTTP {status}", self._wait_for(response))
        if status == 413:
            raise _Refused(413, body or "payload too large")
        if status == 400 and _INVALID_KEY.search(body):
            raise InvalidApiKey(f"Amplitude rejected the API key (HTTP 400: {body}); check api_key")
        if status == 400:
            raise _Refused(400, body)
        raise AmplitudeError(f"Amplitude answered HTTP {status} to {self.api_url}: {body}")

    def _wait_for(self, response: requests.Response) -> float | None:
        """Retry-After, capped at max_backoff (a server may ask for hours)."""
        wait = _retry_after(response)
        if wait is not None and wait > self.max_backoff:
            self.logger.warning(
                "Amplitude asked to wait %gs (Retry-After); waiting max_backoff=%gs instead",
                wait,
                self.max_backoff,
            )
            return self.max_backoff
        return wait

    def _post_with_retries(self, request: Request) -> None:
        """Retry throttling and transient failures with exponential backoff and full jitter."""
        delays = backoff.expo(base=2, factor=1, max_value=self.max_backoff)
        next(delays)  # backoff's wait generators yield a primer first
        attempt = 0
        while True:
            if self.stop.is_set() or self._failed.is_set():
                raise Stopped("stopping: request not sent")
            try:
                self._post(request)
                return
            except _Retryable as exc:
                attempt += 1
                if attempt > self.max_retries:
                    raise AmplitudeError(
                        f"gave up after {attempt} attempts ({exc}) sending {len(request.items)} "
                        f"groups to {self.api_url}"
                    ) from None
                if exc.wait is None:
                    wait = backoff.full_jitter(next(delays))
                else:
                    # At least what Amplitude asked for, plus up to a quarter more, so that the
                    # requests it throttled together (from this target or others) do not all
                    # come back at the same instant and get throttled together again.
                    wait = exc.wait * (1 + random.random() * RETRY_AFTER_SPREAD)
                self.stats.add(retries=1, **({"throttled_seconds": wait} if exc.throttled else {}))
                self.logger.warning("Amplitude %s; retrying in %.1fs", exc, wait)
                if self.stop.wait(wait):  # a signal cuts the wait short
                    raise Stopped("stopping: retry abandoned") from None

    # -- delivery of a request, splitting as Amplitude asks --------------------------------
    def deliver(self, request: Request) -> list[Rejection]:
        """Deliver every identification of the request, or raise; returns the ones refused alone.

        A 413 splits the request. A 400 has no per-item detail, so the request is bisected to
        isolate the bad identifications. When both halves of the first split are refused for
        the same reason, or no identification gets through, the request was refused as a whole
        (a malformed request, a broken proxy...) and the run fails: within three requests in
        the first case, instead of bisecting down to every single group.
        """
        try:
            self._post_with_retries(request)
        except _Refused as exc:
            if len(request.items) == 1:
                return [Rejection(request.items[0].identification, exc.status, exc.reason)]
            halves = request.split()
            answers = [self._try(half) for half in halves]
            if exc.status == 400 and all(a is not None and a.reason == exc.reason for a in answers):
                raise AmplitudeError(
                    f"Amplitude refused a request as a whole (HTTP 400: {exc.reason}): both halves of "
                    "it were refused for the same reason, so it is not one bad group"
                ) from None
            rejected = [
                r
                for half, answer in zip(halves, answers, strict=True)
                if answer
                for r in self._bisect(half, answer)
            ]
            if exc.status == 400 and len(rejected) == len(request.items):
                raise AmplitudeError(
                    f"Amplitude refused every one of {len(request.items)} groups of a request "
                    f"(HTTP 400: {exc.reason})"
                ) from None
            return rejected
        self.stats.add(groups_sent=sum(i.groups for i in request.items))
        return []

    def _try(self, request: Request) -> _Refused | None:
        """Send; None when acknowledged, else Amplitude's refusal."""
        try:
            self._post_with_retries(request)
        except _Refused as exc:
            return exc
        self.stats.add(groups_sent=sum(i.groups for i in request.items))
        return None

    def _bisect(self, request: Request, refusal: _Refused) -> list[Rejection]:
        """The refused identifications of an already refused request, by halving it."""
        if len(request.items) == 1:
            return [Rejection(request.items[0].identification, refusal.status, refusal.reason)]
        rejected: list[Rejection] = []
        for half in request.split():
            answer = self._try(half)
            if answer is not None:
                rejected += self._bisect(half, answer)
        return rejected

    def submit(
        self,
        request: Request,
        after: Collection[Future[list[Rejection]]] = (),
        gate: Gate | None = None,
    ) -> Future[list[Rejection]]:
        """Start delivering ``request``; its future returns the identifications refused alone.

        It is sent once the requests ``after`` were answered and ``gate`` is open, and never when
        one of those failed; those wait in their own threads, the caller goes on. Waits while
        twice the concurrency limit are already submitted and unanswered, not counting the ones a
        closed gate holds, which may be as many again (and more once the gate's requests were
        answered: it opens soon after). Raises the first failure of an earlier request at once,
        so that the run stops reading.
        """
        held = gate is not None and not gate.is_open()
        most = 2 * self.concurrency.limit
        with self._outstanding_cond:
            while self._failure is None:
                if held and gate is not None:
                    if self._held < most or gate.answered():
                        break
                elif self._outstanding - self._held < most:
                    break
                if self.stop.is_set():
                    raise Stopped("stopping: request not sent")
                self._outstanding_cond.wait(0.1)
            if self._failure is not None:
                raise self._failure
            self._outstanding += 1
            self._held += held
        future = self._pool.submit(self._deliver_or_flag, request, after, gate if held else None)
        future.add_done_callback(self._answered)
        return future

    def _answered(self, future: Future[list[Rejection]]) -> None:
        with self._outstanding_cond:
            self._outstanding -= 1
            self._outstanding_cond.notify_all()

    def _released(self) -> None:
        with self._outstanding_cond:
            self._held -= 1
            self._outstanding_cond.notify_all()

    def collect(self, futures: Iterable[Future[list[Rejection]]]) -> list[Rejection]:
        """Wait until every request is answered; the refused identifications, or the first failure."""
        rejected: list[Rejection] = []
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    rejected.extend(future.result())  # re-raises a request's failure here
        except BaseException as exc:
            self._failed.set()
            for future in pending:
                future.cancel()  # not started: never sent; started ones end within request_timeout
            failure = self._failure
            if isinstance(exc, Stopped) and failure is not None and not isinstance(failure, Stopped):
                # A request stopped because another failed: the other's failure is the run's.
                raise failure from None
            raise
        return rejected

    def deliver_all(self, requests_: Iterable[Request]) -> list[Rejection]:
        """Deliver requests concurrently as they come (packing overlaps sending); raise the first failure.

        Returns only once every request was acknowledged (or refused item by item).
        """
        futures: list[Future[list[Rejection]]] = []
        try:
            for request in requests_:
                futures.append(self.submit(request))
        except BaseException:
            self._failed.set()
            for future in futures:
                future.cancel()
            raise
        return self.collect(futures)

    def _deliver_or_flag(
        self, request: Request, after: Collection[Future[list[Rejection]]], gate: Gate | None
    ) -> list[Rejection]:
        try:
            if gate is not None:
                try:
                    self._wait_answered((*gate.before, *after))
                    self._wait_opened(gate)
                finally:
                    self._released()
            else:
                self._wait_answered(after)
            return self.deliver(request)
        except BaseException as exc:
            if self._failure is None:
                self._failure = exc
            self._failed.set()
            raise

    def _wait_answered(self, futures: Collection[Future[list[Rejection]]]) -> None:
        """Wait until these requests were answered; stop (nothing sent) when one failed or the run stops.

        Their pool threads took them before this request's, so they are never waiting on this one.
        """
        pending = [f for f in futures if not f.done()]
        while pending:
            if self.stop.is_set() or self._failed.is_set():
                raise Stopped("stopping: request not sent")
            pending = list(wait(pending, timeout=0.1)[1])
        if any(f.cancelled() or f.exception() is not None for f in futures):
            raise Stopped("stopping: request not sent, an earlier one failed")

    def _wait_opened(self, gate: Gate) -> None:
        """Wait until the gate opens; stop (nothing sent) when it never will, a request failed or the run stops.

        Its thread must end either way: the interpreter waits for the pool's threads at exit.
        """
        while not gate.opened.wait(0.1):
            if self.stop.is_set() or self._failed.is_set() or gate.dropped.is_set():
                raise Stopped("stopping: request not sent")

    def close(self) -> None:
        """Close the HTTP session; requests still waiting for a gate are never sent."""
        self._failed.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.session.close()
