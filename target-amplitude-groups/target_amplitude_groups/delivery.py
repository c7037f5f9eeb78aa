"""Delivery and acknowledgement: the one place that decides what counts as delivered.

The rules (README, "What happens to the data"):

- A sink's identifications are packed into requests, each sent as soon as it is full, while
  the rest of the batch is read; at the end of a batch the outbox sends the partly filled
  request and returns only once Amplitude acknowledged every request (``200 success``) or
  refused single identifications, which go to the rejected file. Anything else raises, and
  the SDK then writes no STATE.
- The SDK writes STATE only after draining every sink, so a STATE line always follows the
  acknowledgement of every record read before it. A checkpoint is such a drain. When a STATE
  arrives after a full batch, the partly filled requests go out and each outbox notes the requests
  sent so far (its barrier); reading goes on, and the drain is made between two later messages
  once the barrier's requests were all answered: it waits for those only, not for the requests
  of records read after that STATE, so the requests in flight never run dry at a checkpoint. A
  STATE passes to the SDK only once the checkpoint before it was written. Without a barrier (a
  checkpoint ``state_interval_seconds`` after the last one, the end of the input, any drain the
  SDK makes on its own) a drain sends and waits for everything.
- No request overtakes a checkpoint: a request of the records read after a checkpoint's STATE
  leaves only once every request before that STATE was answered and the STATE written (never
  when one failed), so Amplitude sees the batches in order, and nothing read after the last
  STATE written reaches it before the next checkpoint is due. The main thread is woken as soon
  as the answers are in, even while the tap is quiet, so the wait is short.
- A dry run sends nothing and never lets a STATE through, so the bookmark cannot move.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Any

from target_amplitude_groups.batching import GroupKey, OversizedValue, Packer, Request, group_key
from target_amplitude_groups.client import AmplitudeClient, Gate, Rejection
from target_amplitude_groups.errors import TooManyRejected
from target_amplitude_groups.files import JsonLines
from target_amplitude_groups.identify import ValueProblem
from target_amplitude_groups.stats import RunStats, count

PROGRESS_SECONDS = 30.0
_LOGGED_VALUE_PROBLEMS = 20  # then one line per batch, the rest are in the rejected file


def _nonblocking_pipe() -> tuple[int, int]:
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    return read, write


@dataclass
class Delivery:
    """Sends batches, accounts for every identification, and says when STATE may move."""

    client: AmplitudeClient | None  # None in a dry run
    api_key: str
    stats: RunStats
    rejected: JsonLines
    dry_run: JsonLines | None
    max_rejected: int
    state_interval: float
    logger: logging.Logger
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _states_seen: int = field(default=0, init=False)
    _states_checkpointed: int = field(default=0, init=False)
    _latest_state: Any = field(default=None, init=False)
    _checkpoint_state: Any = field(default=None, init=False)
    _batch_since_checkpoint: bool = field(default=False, init=False)
    _last_checkpoint: float = field(default_factory=time.monotonic, init=False)
    _last_checkpoint_text: str = field(default="none yet", init=False)
    _last_progress: float = field(default_factory=time.monotonic, init=False)
    _started: float = field(default_factory=time.monotonic, init=False)
    _outboxes: list[Outbox] = field(default_factory=list, init=False)
    _barrier_set: bool = field(default=False, init=False)  # a checkpoint waits for its barrier
    # The pending checkpoint's requests and STATE: every later request is sent only once they
    # were all answered and the STATE written, so that none overtakes them on its way to Amplitude.
    _gate: Gate | None = field(default=None, init=False)
    # Written to when the pending checkpoint's requests were all answered: wakes the input loop.
    _wake: tuple[int, int] = field(default_factory=_nonblocking_pipe, init=False)
    _stopping: bool = field(default=False, init=False)
    # A refusal went past max_rejected, or missed the rejected file: no checkpoint after it.
    _unaccounted: bool = field(default=False, init=False)
    # Requests are numbered by checkpoint period: those of period <= _cut are the pending
    # checkpoint's (None: a drain that waits for every request), so its line counts those only.
    _period: int = field(default=0, init=False)
    _cut: int | None = field(default=None, init=False)
    _covered: int = field(default=0, init=False)  # groups acknowledged up to the last checkpoint

    @property
    def latest_state(self) -> Any:
        """The value of the last STATE message the tap sent."""
        return self._latest_state

    @property
    def is_dry_run(self) -> bool:
        """True when nothing is sent (dry_run)."""
        return self.client is None

    # -- sending ---------------------------------------------------------------------------
    def outbox(self) -> Outbox:
        """Where one sink puts its identifications (each sink has its own)."""
        outbox = Outbox(self)
        if self._barrier_set:
            outbox.join_barrier()  # none of its records precede the pending checkpoint's STATE
        self._outboxes.append(outbox)
        return outbox

    def dry_run_request(self, request: Request) -> None:
        """A dry run's request: written to the dry-run file (or logged), never sent."""
        line = {"identification": json.loads(request.identification_param)}
        self.stats.add(requests=1)
        if self.dry_run is not None:
            self.dry_run.write([line])
        else:
            self.logger.info("dry run request: %s", json.dumps(line, ensure_ascii=False))

    def refuse_values(self, problems: list[ValueProblem]) -> None:
        """Values left out of their group: counted, logged with group and property, kept on file."""
        if not problems:
            return
        with self._lock:
            before = self.stats.values_rejected
            self.stats.add(values_rejected=len(problems))
        for problem in problems[: max(0, _LOGGED_VALUE_PROBLEMS - before)]:
            self.logger.warning(
                "Value left out: group %r of type %r, property '%s': %s",
                problem.group_value,
                problem.group_type,
                problem.property,
                problem.reason,
            )
        if before + len(problems) > _LOGGED_VALUE_PROBLEMS:
            self.logger.warning(
                "%s left out in all; see %s", count(before + len(problems), "value"), self.rejected.path
            )
        self._keep_on_file({"kind": "value", **vars(p)} for p in problems)

    def _keep_on_file(self, lines: Iterable[dict[str, Any]]) -> None:
        """Append to the rejected file; when that fails (a full disk), no checkpoint may follow."""
        try:
            self.rejected.write(lines)
        except BaseException:
            self._unaccounted = True
            raise

    def record_rejections(self, rejections: list[Rejection]) -> None:
        """Identifications Amplitude refused on their own go to the rejected file; too many fail the run."""
        if not rejections:
            return
        for rejection in rejections:
            self.logger.warning(
                "Amplitude rejected group %r of type %r (HTTP %s): %s",
                rejection.identification["group_value"],
                rejection.identification["group_type"],
                rejection.status,
                rejection.reason,
            )
        first = self.rejected.lines == 0
        self._keep_on_file(
            {
                "kind": "identification",
                "identification": r.identification,
                "status": r.status,
                "reason": r.reason,
            }
            for r in rejections
        )
        if first:
            self.logger.warning("Rejected identifications are written to %s", self.rejected.path)
        self.stats.add(rejected=len(rejections))
        if self.stats.rejected > self.max_rejected:
            self._unaccounted = True
            raise TooManyRejected(
                f"Amplitude rejected {self.stats.rejected} identifications, more than max_rejected="
                f"{self.max_rejected}; they are in {self.rejected.path}"
            )

    # -- checkpoints -----------------------------------------------------------------------
    def note_state(self, value: Any) -> None:
        """The tap sent a STATE message (the SDK keeps it until the next drain writes it)."""
        self._states_seen += 1
        self._latest_state = value

    def new_state_pending(self) -> bool:
        """A STATE arrived since the last checkpoint (and this run may write STATE at all)."""
        return not self.is_dry_run and self._states_seen > self._states_checkpointed

    def batch_delivered(self) -> None:
        """A full batch was read and sent: the next STATE is worth a checkpoint.

        The checkpoint waits for Amplitude's answers before STATE is written.
        """
        self._batch_since_checkpoint = True

    def checkpoint_wanted(self) -> bool:
        """A new STATE, after a full batch or ``state_interval_seconds`` since the last checkpoint."""
        return (
            self._states_seen > self._states_checkpointed
            and (
                self._batch_since_checkpoint
                or time.monotonic() - self._last_checkpoint >= self.state_interval
            )
            and not self.is_dry_run
        )

    def set_barrier(self) -> None:
        """The STATE just read will be the next checkpoint's: note what its drain waits for.

        Every partly filled request is sent, and each outbox notes the requests sent so far.
        """
        self.checkpointing()
        for outbox in self._outboxes:
            outbox.set_barrier()
        self._barrier_set = True
        before = tuple(f for outbox in self._outboxes for f in outbox.barrier_requests() if not f.done())
        gate = self._gate = Gate(before)

        def answered(_: Future[list[Rejection]]) -> None:
            if gate.answered():  # the last answer (or two at once: the loop reads the pipe empty)
                with contextlib.suppress(OSError):  # a full pipe is awake already
                    os.write(self._wake[1], b"\0")

        for future in before:
            future.add_done_callback(answered)
        self._cut, self._period = self._period, self._period + 1

    @property
    def gate(self) -> Gate | None:
        """What a request sent now waits for: the pending checkpoint (None: nothing)."""
        if self._gate is not None and self._gate.is_open():
            self._gate = None
        return self._gate

    @property
    def wake_fd(self) -> int:
        """Readable once the pending checkpoint's requests were all answered (read it empty then)."""
        return self._wake[0]

    def open_gate(self) -> None:
        """The requests held after the pending checkpoint's go, once those were answered.

        Called when its STATE was written, and at the end of the input (the last drain waits for
        every request). Never once the run stops: the held requests are left for the next run.
        """
        if self._gate is not None and not self._stopping:
            self._gate.opened.set()

    def stopping(self) -> None:
        """The run stops: no request held at a checkpoint is sent any more, and none waits."""
        self._stopping = True
        if self._gate is not None:
            self._gate.dropped.set()

    @property
    def barrier_set(self) -> bool:
        """A checkpoint's STATE was read, and its drain not made yet."""
        return self._barrier_set

    def barrier_answered(self) -> bool:
        """Every request of the pending checkpoint's barrier was answered (the drain won't wait)."""
        return self._barrier_set and all(outbox.barrier_answered() for outbox in self._outboxes)

    def barrier_acknowledged(self, timeout: float) -> bool:
        """Whether every request of the pending checkpoint's barrier was acknowledged.

        Waits up to ``timeout`` seconds for those still in flight (a run that stops). Never once
        the rejections went past ``max_rejected``, or one could not be written to the rejected
        file: the run fails then, and STATE must not move over them, so that the next run sends
        them again (once their cause was fixed).
        """
        return (
            self._barrier_set
            and not self._unaccounted
            and all(outbox.barrier_acknowledged(timeout) for outbox in self._outboxes)
        )

    def drop_barrier(self) -> None:
        """Drains wait for everything again (the checkpoint was written, or the input ended)."""
        self._barrier_set = False
        for outbox in self._outboxes:
            outbox.drop_barrier()

    def checkpointing(self) -> None:
        """Called just before the drain that writes STATE: which STATE it will write."""
        self._states_checkpointed = self._states_seen
        self._batch_since_checkpoint = False
        self._last_checkpoint = time.monotonic()
        self._checkpoint_state = self._latest_state
        self._cut = None

    @property
    def period(self) -> int:
        """The checkpoint period a request sent now belongs to."""
        return self._period

    def checkpoint_written(self) -> None:
        """Called once the drain wrote STATE: log it, with the groups that STATE covers.

        Those are the groups acknowledged in requests of the records before it, not the ones
        read after it and already answered too.
        """
        self._covered += sum(outbox.take_acknowledged(self._cut) for outbox in self._outboxes)
        self._last_checkpoint_text = f"{describe_state(self._checkpoint_state)} after {self._covered} groups"
        self.stats.add(checkpoints=1)
        self.logger.info(
            "Checkpoint: %s delivered and acknowledged; STATE %s",
            count(self._covered, "group"),
            describe_state(self._checkpoint_state),
        )
        self.open_gate()

    def log_progress(self, *, force: bool = False) -> None:
        """Groups delivered, requests, throttling and the last checkpoint, every 30 s at most."""
        now = time.monotonic()
        with self._lock:  # called from the request threads as their answers come
            if not force and now - self._last_progress < PROGRESS_SECONDS:
                return
            self._last_progress = now
        elapsed = max(now - self._started, 1e-9)
        self.logger.info(
            "Progress: %s delivered (%.0f/s, %s), %s, %s, %.1fs throttled; last checkpoint: %s",
            count(self.stats.groups_sent, "group"),
            self.stats.groups_sent / elapsed,
            self.stats.concurrency_text(),
            count(self.stats.requests, "request"),
            count(self.stats.retries, "retry", "retries"),
            self.stats.throttled_seconds,
            self._last_checkpoint_text,
        )


class Outbox:
    """One sink's identifications on their way to Amplitude, while the sink keeps reading.

    Each request goes out as soon as it is full (packing and sending overlap the reading of
    the rest of the batch); :meth:`finish` sends the partly filled last one and returns once
    Amplitude acknowledged every request (or refused single identifications). So a batch
    still ends with at most one partly filled request, and STATE, which the SDK writes only
    after every sink's batch returned, still follows acknowledgement.

    Two updates of one group never travel in two requests at once: the packer merges them
    while the earlier one's request is not yet released, and a request carrying a group that
    an unanswered request carries waits for that answer before it goes out, so Amplitude
    applies them in order.
    """

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.packer = Packer(delivery.api_key, self._oversized)
        self._left_out: list[ValueProblem] = []  # properties too large for any request
        self._futures: list[Future[list[Rejection]]] = []
        self._carrying: dict[GroupKey, Future[list[Rejection]]] = {}  # group -> last request with it
        # The requests of the records read before the pending checkpoint's STATE (None: no
        # checkpoint pending, a drain waits for every request).
        self._barrier: list[Future[list[Rejection]]] | None = None
        self._barrier_done = 0  # how many of the barrier's first requests are known answered
        # Each request sent since the last checkpoint: its period, its groups, and the
        # identifications of its items that are no group of their own (later parts of a group).
        self._ledger: list[tuple[Future[list[Rejection]], int, int, set[int]]] = []

    def add(self, identification: dict[str, Any]) -> None:
        """Pack one identification of the current record."""
        self.packer.add(identification)

    def end_record(self) -> None:
        """The record's identifications were all added: send the requests ready to go."""
        for request in self.packer.end_record():
            self._send(request)

    def _send(self, request: Request) -> None:
        delivery = self.delivery
        client = delivery.client
        if client is None:
            delivery.dry_run_request(request)
            return
        keys = [group_key(item.identification) for item in request.items]
        carrying = self._carrying
        # Rare: the same group again, a request ago. This one is sent after that one's answer.
        earlier = {f for f in (carrying.get(k) for k in keys) if f is not None and not f.done()}
        future = client.submit(request, earlier, delivery.gate)
        future.add_done_callback(self._answered)
        parts = {id(i.identification) for i in request.items if not i.groups}
        self._ledger.append((future, delivery.period, sum(i.groups for i in request.items), parts))
        for key in keys:
            carrying[key] = future
        self._futures.append(future)

    def _oversized(self, exc: OversizedValue) -> None:
        ident = exc.identification
        self._left_out.append(ValueProblem(ident["group_type"], ident["group_value"], exc.property, str(exc)))

    def _answered(self, future: Future[list[Rejection]]) -> None:
        self.delivery.log_progress()

    def end_batch(self) -> None:
        """The batch ends: send its partly filled request, without waiting for the answers."""
        self._flush()
        self._settle(wait=False)

    def finish(self) -> None:
        """Return once the requests a drain covers were answered, else raise.

        With a barrier (a checkpoint pending): its requests, those of the records read before
        the checkpoint's STATE. Otherwise the partly filled request is sent too, and all are.
        """
        if self._barrier is not None:
            self._settle_barrier()
            return
        self._flush()
        self._settle(wait=True)

    def set_barrier(self) -> None:
        """Send the partly filled request; the drain of the pending checkpoint waits for all sent so far."""
        self._flush()
        self._barrier, self._barrier_done = list(self._futures), 0

    @property
    def barrier_pending(self) -> bool:
        """A checkpoint is pending: the next drain waits for the requests before its STATE only."""
        return self._barrier is not None

    def barrier_requests(self) -> list[Future[list[Rejection]]]:
        """The requests the pending checkpoint waits for (none without one)."""
        return list(self._barrier or [])

    def join_barrier(self) -> None:
        """A sink made while a checkpoint is pending: its drain waits for none of its requests."""
        self._barrier, self._barrier_done = [], 0

    def barrier_answered(self) -> bool:
        """Every request of the barrier has its answer (or there is no barrier).

        Asked before every input line while a checkpoint is pending: each answer is looked at once.
        """
        barrier = self._barrier
        if not barrier:
            return True
        while self._barrier_done < len(barrier) and barrier[self._barrier_done].done():
            self._barrier_done += 1
        return self._barrier_done == len(barrier)

    def barrier_acknowledged(self, timeout: float) -> bool:
        """Every request of the barrier ended acknowledged (waiting up to ``timeout`` seconds)."""
        barrier = self._barrier or []
        _, pending = wait(barrier, timeout=timeout)
        return not pending and all(not f.cancelled() and f.exception() is None for f in barrier)

    def drop_barrier(self) -> None:
        """No checkpoint pending: a drain waits for every request again."""
        self._barrier = None

    def take_acknowledged(self, cut: int | None) -> int:
        """Groups acknowledged in the requests of periods up to ``cut`` (None: all); forgets them."""
        total, kept = 0, []
        for entry in self._ledger:
            future, period, groups, parts = entry
            if (cut is not None and period > cut) or not future.done():
                kept.append(entry)
            elif not future.cancelled() and future.exception() is None:
                rejected = sum(1 for r in future.result() if id(r.identification) not in parts)
                total += groups - rejected
        self._ledger = kept
        return total

    def unsettled(self) -> bool:
        """Requests were sent whose answers were not accounted for yet."""
        return bool(self._futures)

    def holding(self) -> bool:
        """Records were read whose identifications or left-out values no drain has handled yet."""
        return self.packer.holding or bool(self._left_out)

    def _settle_barrier(self) -> None:
        client = self.delivery.client
        if client is None:
            self._barrier = None
            return
        # A request of the barrier answered before may have been settled already (at a batch end).
        unsettled = set(self._futures)
        self._account([f for f in self._barrier or [] if f in unsettled])
        self._barrier = None  # only once all were acknowledged: a failure keeps it, unacknowledged

    def _flush(self) -> None:
        for request in self.packer.flush():
            self._send(request)
        left_out, self._left_out = self._left_out, []
        self.delivery.refuse_values(left_out)

    def _settle(self, *, wait: bool) -> None:
        """Account for the answered requests (all of them with ``wait``); raise a failure."""
        if self.delivery.client is None:
            return
        # With ``wait`` every request; else one look at each: one answered meanwhile is settled next time.
        self._account(list(self._futures) if wait else [f for f in self._futures if f.done()])

    def _account(self, futures: list[Future[list[Rejection]]]) -> None:
        """Wait for these requests, then count them settled and record their rejections.

        A failure raises before anything is counted: the failed request, and the others with it,
        stay unsettled, so no later drain or checkpoint can take them as acknowledged.
        """
        client = self.delivery.client
        assert client is not None
        rejected = client.collect(futures)
        settled = set(futures)
        self._futures = [f for f in self._futures if f not in settled]
        self._carrying = {k: f for k, f in self._carrying.items() if not f.done()}
        self.delivery.record_rejections(rejected)


def describe_state(state: Any) -> str:
    """A short account of a Singer STATE: each stream's bookmark, else the JSON cut short."""
    bookmarks = state.get("bookmarks") if isinstance(state, dict) else None
    if isinstance(bookmarks, dict) and bookmarks:
        parts = []
        for stream, mark in bookmarks.items():
            if isinstance(mark, dict) and "replication_key_value" in mark:
                parts.append(
                    f"{stream} {mark.get('replication_key', 'bookmark')}={mark['replication_key_value']}"
                )
            else:
                parts.append(f"{stream} (no bookmark yet)")
        text = ", ".join(parts)
    else:
        text = json.dumps(state)
    return text if len(text) <= 300 else text[:297] + "..."
