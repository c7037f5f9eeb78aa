"""target-amplitude-groups: Singer records as Amplitude group properties via /groupidentify."""

from __future__ import annotations

import datetime as dt
import logging
import os
import select
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from types import FrameType
from typing import IO, Any, cast
from urllib.parse import quote_plus

from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError, InvalidInputLine
from singer_sdk.singerlib import SingerMessageType
from singer_sdk.sinks import Sink
from singer_sdk.target_base import Target

from groups_mapping import (
    MAPPING_DESCRIPTION,
    MAPPING_FILE_DESCRIPTION,
    MAX_PROPERTIES,
    MappingConfig,
    MappingError,
    deleted_flag_problems,
    insecure_url,
    load_mapping,
)
from target_amplitude_groups.client import REGION_URLS, AmplitudeClient
from target_amplitude_groups.delivery import Delivery
from target_amplitude_groups.errors import Interrupted, RunFailure
from target_amplitude_groups.files import JsonLines, write_json
from target_amplitude_groups.identify import DELETED_PROPERTY, Options
from target_amplitude_groups.reader import FastSingerReader, pipe_lines
from target_amplitude_groups.sinks import AmplitudeGroupsSink
from target_amplitude_groups.stats import RunStats

DEFAULT_REJECTED_FILE = "output/amplitude-rejected.jsonl"


def partial_reason(state: Any) -> str | None:
    """Why the tap stopped before reading everything, when its STATE says so.

    A tap that stops on a limit (tap-salesforce-groups: the API budget, the org's request
    limit) writes ``"partial": {"reason": …}`` at the top of its STATE; the run report then says
    ``partial`` instead of ``ok``.
    """
    partial = state.get("partial") if isinstance(state, dict) else None
    if isinstance(partial, dict) and partial.get("reason"):
        return str(partial["reason"])
    return None


class StateWatchingReader(FastSingerReader):
    """The fast reader, telling the target about each STATE (the public ``message_reader_class`` hook).

    :meth:`process_lines` (the reader's public entry point) wraps the input and the callbacks:
    between two messages the target may checkpoint (every record before a STATE has been read
    then, and none after it); each STATE is noted before the SDK handles it, and in a dry run
    its value is emptied, so the SDK writes no state: a dry run can never move Meltano's
    bookmark. BATCH messages are refused.
    """

    def __init__(self) -> None:
        super().__init__()
        self.target: TargetAmplitudeGroups | None = None

    def process_lines(
        self, file_input: IO[str] | None, callbacks: dict[str, Callable[[dict[str, Any]], None]]
    ) -> Counter[str]:
        """The SDK's loop, over checkpointed input and watched callbacks."""
        target = self.target
        if target is None:
            return super().process_lines(file_input, callbacks)
        on_state = callbacks[SingerMessageType.STATE]
        delivery = target.delivery

        def state(message: dict[str, Any]) -> None:
            if delivery.barrier_set:
                # The SDK writes the latest STATE it was given: the pending checkpoint's goes first.
                target.checkpoint()
            delivery.note_state(message.get("value"))
            if delivery.checkpoint_wanted():
                delivery.set_barrier()  # the drain comes once the records before it are acknowledged
            on_state({**message, "value": {}} if delivery.is_dry_run else message)

        watched = {**callbacks, SingerMessageType.STATE: state, SingerMessageType.BATCH: _refuse_batch}
        lines = _checkpointing(file_input or self.default_input, target)
        try:
            return super().process_lines(cast("IO[str]", lines), watched)  # the SDK only iterates it
        except BaseException:
            target.salvage_checkpoint()
            raise


QUIET_SECONDS = 1.0  # how often a checkpoint is looked at while no input comes


def _checkpointing(lines: Iterable[str], target: TargetAmplitudeGroups) -> Iterator[str]:
    """Each line, once read; the target checkpoints first when it wants to (between two messages).

    A checkpoint the target wants (a new STATE after a full batch, or ``state_interval_seconds``
    after the last one) first sets a barrier, covering every record read so far, the ones before
    that STATE included; it is written as soon as the barrier's requests were answered. While
    the tap is quiet (a long Bulk job, a slow query) this is looked at every ``QUIET_SECONDS``,
    and so is a signal: reading stops here, between two messages.
    """
    delivery = target.delivery
    for line in pipe_lines(lines, QUIET_SECONDS, delivery.wake_fd):
        if target.signalled is not None:  # an attribute per line, no call: this loop is the hot path
            target.stop_if_signalled()
        if delivery.barrier_answered():
            target.checkpoint()
        elif not delivery.barrier_set and delivery.checkpoint_wanted():
            delivery.set_barrier()
        if line is not None:  # None: the tap was quiet a while (a long query); checkpoint anyway
            yield line


def _refuse_batch(message: dict[str, Any]) -> None:
    # The target does not advertise `batch`: never open the files a manifest names.
    raise RunFailure(
        "BATCH messages are not supported by target-amplitude-groups; turn batch output "
        "off in the tap (its `batch_config` setting)"
    )


STOP_GRACE_SECONDS = 15.0  # after request_timeout: the longest a signalled run may take to end


def _watchdog(seconds: float, code: int, logger: logging.Logger) -> None:
    """Exit with ``code`` if the process is still alive ``seconds`` from now.

    After a signal nothing may hang: when Meltano stops reading (it is terminating too), a
    write to a full pipe would block forever. In-flight requests end within request_timeout,
    so a process still alive after it is stuck.
    """

    def expire() -> None:
        logger.error("Still stopping after %.0fs (output blocked?); exiting now", seconds)
        os._exit(code)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the target is built; they reach its own handler after.

    Building it installs the SDK's handler first (it drains the sinks and exits 0), which ours
    replaces at the end: a signal in between ended the run with exit 0 and no report. A
    target that fails to build drops a signal held meanwhile (it exits 1 with its own error),
    and the handlers from before are put back.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = (signal.SIGINT, signal.SIGTERM)
    before = {signum: signal.getsignal(signum) for signum in held}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    except BaseException:
        for signum in held:
            signal.signal(signum, _ignore)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a held signal is handled (dropped) here
        for signum, handler in before.items():
            if handler is not None:  # None: not set from Python (never the case for these two)
                signal.signal(signum, handler)
        raise
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a held signal reaches the target's handler here


def _ignore(signum: int, frame: FrameType | None) -> None:
    """A signal held while a target that failed to build was made: its error stands."""


def _discard_input(seconds: float, quiet: float) -> None:
    """Read what is left on stdin, unused, until it ends or stays quiet ``quiet`` seconds (at most ``seconds``).

    Ctrl-C reaches the tap too, which then ends its output within seconds. Until then Meltano
    keeps copying the tap's lines into the target's stdin: a target that exited at once would
    make that copy fail with a BrokenPipeError traceback in Meltano's log. Meltano never closes
    that stdin when it terminates its plugins, so the input does not end: a quiet input means
    the tap has stopped writing. Nothing read here is acknowledged, and no STATE follows it.
    """
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (tests feed a StringIO)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            ready, _, _ = select.select([fd], [], [], min(left, quiet))
            if not ready or not os.read(fd, 1 << 16):
                return
        except (OSError, ValueError):
            return


# The numeric settings: name, type with the range checked at start, default, description.
TUNING: tuple[tuple[str, th.JSONTypeHelper[Any], float, str], ...] = (
    (
        "max_rejected",
        th.IntegerType(minimum=0),
        100,
        "The run fails once Amplitude has rejected more identifications than this.",
    ),
    (
        "max_concurrency",
        th.IntegerType(minimum=1, maximum=64),
        4,
        "Most requests in flight at once; halved when Amplitude throttles, then grown back one at a time.",
    ),
    ("max_retries", th.IntegerType(minimum=0, maximum=100), 8, "Retries of a throttled or failed request."),
    # Whole seconds: Meltano and the SDK pass integers from environment variables, not decimals.
    ("request_timeout", th.IntegerType(minimum=1, maximum=3600), 30, "Seconds per HTTP request."),
    (
        "max_backoff",
        th.IntegerType(minimum=0, maximum=3600),
        60,
        "Longest wait between retries, in seconds; a longer Retry-After is capped to it.",
    ),
    (
        "state_interval_seconds",
        th.IntegerType(minimum=1, maximum=240),
        60,
        "Checkpoint (emit the tap's newest STATE once everything before it was acknowledged) at least this often while the tap sends new STATE, besides after each full batch.",
    ),
)


class TargetAmplitudeGroups(Target):
    """Writes records as Amplitude group properties, batched to the API's limits."""

    name = "target-amplitude-groups"
    default_sink_class = AmplitudeGroupsSink
    message_reader_class = StateWatchingReader

    config_jsonschema = th.PropertiesList(
        th.Property(
            "api_key", th.StringType, required=True, secret=True, description="Amplitude project API key."
        ),
        th.Property(
            "region",
            th.StringType(allowed_values=["us", "eu"]),
            default="us",
            description="us (api2.amplitude.com) or eu (api.eu.amplitude.com).",
        ),
        th.Property(
            "api_url",
            th.StringType,
            description="Full /groupidentify URL; overrides region (proxies, emulators). https:// only, "
            "except http:// to a loopback host.",
        ),
        th.Property("mapping_file", th.StringType, description=MAPPING_FILE_DESCRIPTION),
        th.Property("mapping", th.ObjectType(), description=MAPPING_DESCRIPTION),
        th.Property(
            "null_values",
            th.StringType(allowed_values=["unset", "skip"]),
            default="unset",
            description="unset: an explicit null clears the property with $unset; skip: nulls are not "
            "sent. A field absent from a record is always left alone.",
        ),
        th.Property(
            "deleted_records",
            th.StringType(allowed_values=["ignore", "unset", "flag"]),
            default="ignore",
            description="Rows with IsDeleted = true: ignore them, unset their mapped properties, or flag them "
            "(deleted_property = true, and false on live rows).",
        ),
        th.Property(
            "deleted_property",
            th.StringType,
            default=DELETED_PROPERTY,
            description="The property deleted_records flag writes. When several objects feed one group "
            "type, each object's rows flag '<object> <deleted_property>'.",
        ),
        th.Property(
            "keep_sdc_columns",
            th.BooleanType,
            default=False,
            description="Without a mapping: also send Singer metadata columns (_sdc_*) as properties.",
        ),
        th.Property(
            "dry_run",
            th.BooleanType,
            default=False,
            description="Build and validate every request; send nothing and emit no STATE.",
        ),
        th.Property(
            "dry_run_file", th.StringType, description="JSONL file for dry-run requests (default: the log)."
        ),
        th.Property(
            "rejected_file",
            th.StringType,
            default=DEFAULT_REJECTED_FILE,
            description="JSONL file of identifications Amplitude rejected and values left out, with reasons.",
        ),
        th.Property(
            "report_file",
            th.StringType,
            description="JSON run report, rewritten at the end of every run, failed or not.",
        ),
        *(th.Property(name, kind, default=default, description=text) for name, kind, default, text in TUNING),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.stats = RunStats()
        self.stop_event = threading.Event()
        super().__init__(*args, **kwargs)
        if (url := self.config.get("api_url")) and (problem := insecure_url("api_url", str(url))):
            raise ConfigValidationError("Config validation failed", errors=[problem])
        _ = self.mapping  # report mapping problems before reading any record
        if problems := self._deleted_flag_problems():
            raise ConfigValidationError("Config validation failed", errors=problems)
        if self.mapping is None:
            self.logger.warning(
                "No mapping set (mapping_file or mapping): each stream becomes a group type of its "
                "own, named after the stream, with its other fields as properties"
            )
        self.generic_properties: set[str] = set()
        if isinstance(self.message_reader, StateWatchingReader):
            self.message_reader.target = self
        self._trap_signals()

    @cached_property
    def mapping(self) -> MappingConfig | None:
        """The mapping, when one is set; without it each stream maps to itself."""
        if self.config.get("mapping") is None and not self.config.get("mapping_file"):
            return None
        try:
            # Any tap's stream and field names are fine here: the target builds no SOQL.
            return load_mapping(
                self.config.get("mapping"), self.config.get("mapping_file"), strict_names=False
            )
        except MappingError as exc:
            raise ConfigValidationError(f"{exc.source} is invalid", errors=exc.problems) from exc

    def _deleted_flag_problems(self) -> list[str]:
        """deleted_property must be a usable name that no mapped property uses (flag mode)."""
        name = str(self.config["deleted_property"])
        flagging = self.config["deleted_records"] == "flag"
        return deleted_flag_problems(self.mapping if flagging else None, name)

    def note_generic_properties(self, names: Iterable[str]) -> None:
        """Without a mapping: warn once when the streams define more properties than Amplitude indexes."""
        before = len(self.generic_properties)
        self.generic_properties.update(names)
        if before <= MAX_PROPERTIES < len(self.generic_properties):
            self.logger.warning(
                "Without a mapping the streams define %d distinct properties; an Amplitude project "
                "indexes at most %d group properties, so the rest are stored but not indexed. Write a "
                "mapping that names the properties you need",
                len(self.generic_properties),
                MAX_PROPERTIES,
            )

    @property
    def api_key(self) -> str:
        """The Amplitude API key."""
        return str(self.config["api_key"])

    @cached_property
    def redact(self) -> Callable[[str], str]:
        """Replaces the API key (plain or URL-encoded) in a text by ***."""
        return redactor(self.api_key)

    @cached_property
    def options(self) -> Options:
        """The settings that shape identifications."""
        return Options(
            self.config["null_values"], self.config["deleted_records"], str(self.config["deleted_property"])
        )

    @cached_property
    def delivery(self) -> Delivery:
        """What delivers identifications and decides when STATE may move."""
        config = self.config
        client = None
        if not config["dry_run"]:
            client = AmplitudeClient(
                api_url=config.get("api_url") or REGION_URLS[config["region"]],
                api_key=self.api_key,
                stats=self.stats,
                max_concurrency=int(config["max_concurrency"]),
                max_retries=int(config["max_retries"]),
                request_timeout=float(config["request_timeout"]),
                max_backoff=float(config["max_backoff"]),
                stop=self.stop_event,
                redact=self.redact,
                logger=self.logger,
            )
        dry_run_file = config.get("dry_run_file")
        return Delivery(
            client=client,
            api_key=self.api_key,
            stats=self.stats,
            rejected=JsonLines(config["rejected_file"], self.redact),
            dry_run=JsonLines(dry_run_file, self.redact) if dry_run_file else None,
            max_rejected=int(config["max_rejected"]),
            state_interval=float(config["state_interval_seconds"]),
            logger=self.logger,
        )

    # -- signals ---------------------------------------------------------------------------
    def _trap_signals(self) -> None:
        """Replace the SDK's SIGINT/SIGTERM handler with one that stops without writing STATE.

        The SDK's handler drains every sink and writes STATE from inside whatever was running,
        possibly a batch half-delivered, then exits 0. No SDK hook changes that, so the handler
        is replaced here (tests/target/test_data_safety.py::test_a_signal_during_delivery_stops_without_state_or_traceback
        fails if the SDK's behaviour shows again).
        """
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Note the signal and stop sending; the main thread stops at its next safe point.

        Raising from here would land in whatever the main thread runs, possibly between a lock's
        acquire and the block that releases it (a ``with`` statement's ``__enter__``, the loop
        in ``concurrent.futures.wait`` taking each future's lock): the request threads then wait
        on that lock forever, and so does the interpreter's exit, until the watchdog. So the
        main thread stops where it looks: between two input lines (at least every
        ``QUIET_SECONDS``), and in every wait for Amplitude, which ends as ``Stopped`` once
        the requests in flight end (within request_timeout; none starts after the signal).
        """
        if self.signalled is not None:
            # A second signal: Ctrl-C reaches the whole process group, then Meltano terminates
            # its plugins. The target is stopping already.
            return
        self.signalled = signal.Signals(signum)
        self.stop_event.set()  # retries and backoff waits end now; in-flight requests end within request_timeout
        grace = float(self.config["request_timeout"]) + STOP_GRACE_SECONDS
        _watchdog(grace, 128 + signum, self.logger)

    signalled: signal.Signals | None = None  # the SIGINT or SIGTERM that stops the run

    def stop_if_signalled(self) -> None:
        """Raise :class:`Interrupted` once a signal has arrived.

        Raises:
            Interrupted: SIGINT or SIGTERM arrived; the exit code is 128 + its number.
        """
        if self.signalled is not None:
            raise Interrupted(self.signalled, self.signalled.name)

    # -- sinks and checkpoints -------------------------------------------------------------
    def get_sink(
        self,
        stream_name: str,
        *,
        record: dict[str, Any] | None = None,
        schema: dict[str, Any] | None = None,
        key_properties: Sequence[str] | None = None,
    ) -> Sink:
        """As the SDK does; a sink retired by a schema change is delivered first, keeping order."""
        if schema is not None and self.sink_exists(stream_name):
            current = super().get_sink(stream_name)
            if current.original_schema != schema or current.key_properties != key_properties:
                if self.delivery.barrier_set:
                    # Its drain waits for all its requests, some held until that checkpoint is written.
                    self.checkpoint()
                self.drain_one(current)  # its records precede the new schema's: send them first
        return super().get_sink(stream_name, record=record, schema=schema, key_properties=key_properties)

    def checkpoint(self) -> None:
        """Emit the latest STATE, delivering every record read before it first.

        The SDK writes STATE only in ``drain_all`` (there is no public hook to write it), after
        every sink's ``process_batch`` returned, and ours return only once Amplitude acknowledged
        their records. So a checkpoint is a ``drain_all``, called between two messages; the
        ``Checkpoint:`` line is logged once it returned, when STATE has been written.
        """
        if not self.delivery.barrier_set:
            self.delivery.checkpointing()  # else noted when its STATE was read (set_barrier)
        self.drain_all()
        self.delivery.drop_barrier()
        self.delivery.checkpoint_written()

    def salvage_checkpoint(self) -> None:
        """A run that stops still writes its pending checkpoint, if Amplitude acknowledged it.

        The requests of the records before the pending checkpoint's STATE were sent already; they
        end within ``request_timeout``. When every one was acknowledged, that STATE is written
        (nothing after it is waited for); otherwise nothing is, and the failure stands.
        """
        delivery = self.delivery
        delivery.stopping()  # the requests held after its STATE are left for the next run
        if not delivery.barrier_set or not delivery.barrier_acknowledged(
            float(self.config["request_timeout"]) + 5
        ):
            return
        try:
            self.checkpoint()
        except Exception:
            self.logger.warning("The checkpoint pending when the run stopped could not be written")

    # -- end of the run --------------------------------------------------------------------
    def process_endofpipe(self) -> None:
        """Deliver everything, then the final STATE (SDK), then the summary and report."""
        final = self.delivery.new_state_pending() or self.delivery.barrier_set
        self.delivery.drop_barrier()  # the last drain waits for every request
        self.delivery.open_gate()
        if final:
            self.delivery.checkpointing()
        super().process_endofpipe()
        if final:
            self.delivery.checkpoint_written()
        # A signal during the last drain: its STATE is written only if every request was
        # acknowledged, and the run still ends as interrupted (SPEC: exit non-zero).
        self.stop_if_signalled()
        self.finish("ok")

    def finish(self, status: str, error: str | None = None) -> None:
        """The summary line and the run report; called once per run, failed or not.

        Raises:
            RunFailure: the report could not be written (a full disk); no temporary file is left.
        """
        if self._finished:
            return
        self._finished = True
        dry_run = bool(self.config["dry_run"])
        mode = " (dry run: nothing sent, no STATE)" if dry_run else ""
        if status == "ok" and (reason := partial_reason(self.delivery.latest_state)):
            status, error = "partial", reason  # the tap stopped early: delivered, but not everything
            self.logger.warning("Summary%s: %s (partial: %s)", mode, self.stats.summary(), reason)
        else:
            (self.logger.info if status == "ok" else self.logger.error)(
                "Summary%s: %s%s", mode, self.stats.summary(), "" if status == "ok" else f" ({status})"
            )
        if self.delivery.client is not None:
            self.delivery.client.close()
        if path := self.config.get("report_file"):
            rejected = str(self.delivery.rejected.path) if self.delivery.rejected.lines else None
            write_report(
                str(path),
                status,
                error=error,
                stats=self.stats,
                dry_run=dry_run,
                rejected_file=rejected,
                redact=self.redact,
            )

    _finished = False

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: Any = None,
        file_input: IO[str] | None = None,
    ) -> None:
        """Run the target; any failure is one error line, the summary, the report and a non-zero exit.

        Never a traceback: whatever the exception (a bad input line, a full disk, a bug), the
        run report is rewritten with ``failed`` so that it never keeps an earlier run's ``ok``.
        ``Target.invoke``'s steps, done here to keep the instance: the failure report needs it.
        """
        if about:
            super().invoke(about=about, about_format=about_format)  # prints, then exits
        cls.print_version(print_fn=cls.logger.info)
        target = None
        settings = config.config if config is not None else {}
        try:
            with _signals_held():
                target = cls(
                    config=settings,
                    validate_config=True,
                    parse_env_config=config.parse_env if config is not None else False,
                )
            target.listen(file_input)
        except ConfigValidationError as exc:
            # Before the run started: the SDK prints each problem on its own line. The report
            # still says so, or it would keep an earlier run's "ok".
            errors = "; ".join(map(str, exc.errors)) or str(exc)
            cls._report_refused_start(settings, f"Config validation failed: {errors}")
            raise
        except (Exception, KeyboardInterrupt) as exc:  # the one place every failure ends
            cls._fail(exc, target, settings, from_stdin=file_input is None)

    @classmethod
    def _report_refused_start(cls, settings: dict[str, Any], error: str) -> None:
        """The report of a run that failed before the target was made (bad settings or mapping)."""
        path = settings.get("report_file")
        if not isinstance(path, str) or not path:
            return
        try:
            write_report(
                path,
                "failed",
                error=error,
                stats=RunStats(),
                dry_run=settings.get("dry_run") is True,
                rejected_file=None,
                redact=redactor(settings.get("api_key")),  # the whole report, error included
            )
        except RunFailure as exc:
            cls.logger.error("%s", exc)

    @classmethod
    def _fail(
        cls,
        exc: BaseException,
        target: TargetAmplitudeGroups | None,
        settings: dict[str, Any],
        *,
        from_stdin: bool = True,
    ) -> None:
        if target is not None and target.signalled is not None and not isinstance(exc, Interrupted):
            # Stopped, or whatever a request in flight ended with: the signal is why the run ended.
            exc = Interrupted(target.signalled, target.signalled.name)
        if isinstance(exc, (RunFailure, InvalidInputLine)):
            message = str(exc)
        elif isinstance(exc, KeyboardInterrupt):
            exc = Interrupted(signal.SIGINT, "SIGINT")
            message = str(exc)
        else:  # not one of ours: name the exception, still in one line
            message = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:1000]
        message = (target.redact if target is not None else redactor(settings.get("api_key")))(message)
        cls.logger.error("%s", message)
        if isinstance(exc, Interrupted):
            cls.logger.error("Stopped; STATE was emitted only for groups Amplitude acknowledged")
        else:
            cls.logger.error("No STATE was emitted for unacknowledged records; the next run resends them")
        if target is not None:
            try:
                target.finish("interrupted" if isinstance(exc, Interrupted) else "failed", message)
            except RunFailure as report_failure:
                cls.logger.error("%s", report_failure)
        else:  # it failed while it was made: nothing was read or sent
            dry = " (dry run: nothing sent, no STATE)" if settings.get("dry_run") is True else ""
            cls.logger.error("Summary%s: %s (failed)", dry, RunStats().summary())
            cls._report_refused_start(settings, message)
        if isinstance(exc, Interrupted) and from_stdin:
            _discard_input(STOP_GRACE_SECONDS, QUIET_SECONDS)
        raise SystemExit(getattr(exc, "exit_code", 1)) from None


def redactor(api_key: object) -> Callable[[str], str]:
    """A function replacing the API key (plain or URL-encoded) in a text by ***."""
    secrets = {api_key, quote_plus(api_key)} if isinstance(api_key, str) and api_key else set()

    def redact(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    return redact


def write_report(
    path: str,
    status: str,
    *,
    error: str | None,
    stats: RunStats,
    dry_run: bool,
    rejected_file: str | None,
    redact: Callable[[str], str],
) -> None:
    """Rewrite ``report_file``: the run's status, its error and its counters.

    Raises:
        RunFailure: the report could not be written (a full disk); no temporary file is left.
    """
    report = {
        "status": status,
        "error": error,
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "dry_run": dry_run,
        "rejected_file": rejected_file,
        **stats.as_dict(),
    }
    try:
        write_json(path, report, redact)
    except OSError as exc:
        raise RunFailure(f"cannot write report_file {path}: {exc.strerror or exc}") from exc


if __name__ == "__main__":
    TargetAmplitudeGroups.cli()
