"""target-amplitude-groups: Singer records as Amplitude group properties via /groupidentify."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import IO, Any

from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecReader
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.target_base import Target

from groups_mapping import (
    MAPPING_DESCRIPTION,
    MAPPING_FILE_DESCRIPTION,
    MappingConfig,
    MappingError,
    load_mapping,
)
from target_amplitude_groups.client import (
    REGION_URLS,
    AmplitudeClient,
    AmplitudeError,
    BackgroundSender,
    RunStats,
)
from target_amplitude_groups.identify import Options
from target_amplitude_groups.sinks import AmplitudeGroupsSink


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


class TargetAmplitudeGroups(Target):
    """Writes records as Amplitude group properties, batched to the API's limits."""

    name = "target-amplitude-groups"
    default_sink_class = AmplitudeGroupsSink
    # The SDK's msgspec reader: numbers still arrive as decimals, as with the default reader.
    message_reader_class = MsgSpecReader

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
            description="Full /groupidentify URL; overrides region (proxies, emulators).",
        ),
        th.Property("mapping_file", th.StringType, description=MAPPING_FILE_DESCRIPTION),
        th.Property("mapping", th.ObjectType(), description=MAPPING_DESCRIPTION),
        th.Property(
            "null_values",
            th.StringType(allowed_values=["unset", "skip"]),
            default="unset",
            description="unset: a null clears the property with $unset; skip: nulls are not sent.",
        ),
        th.Property(
            "deleted_records",
            th.StringType(allowed_values=["ignore", "unset", "flag"]),
            default="ignore",
            description="Rows with IsDeleted = true: ignore them, unset their mapped properties, or flag them "
            "with property 'deleted' = true.",
        ),
        th.Property(
            "dry_run",
            th.BooleanType,
            default=False,
            description="Build and validate every request; send nothing.",
        ),
        th.Property(
            "dry_run_file", th.StringType, description="JSONL file for dry-run requests (default: the log)."
        ),
        th.Property(
            "rejected_file", th.StringType, description="JSONL file of identifications Amplitude rejected."
        ),
        th.Property(
            "report_file", th.StringType, description="JSON run report written at the end of the run."
        ),
        th.Property("max_concurrency", th.IntegerType, default=4, description="Requests in flight at once."),
        th.Property(
            "max_retries", th.IntegerType, default=8, description="Retries of a throttled or failed request."
        ),
        th.Property("request_timeout", th.NumberType, default=30, description="Seconds per HTTP request."),
        th.Property(
            "max_backoff",
            th.NumberType,
            default=60,
            description="Longest wait between retries, in seconds (Retry-After is honoured as sent).",
        ),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.stats = RunStats()
        self._file_lock = threading.Lock()
        super().__init__(*args, **kwargs)
        _ = self.mapping  # report mapping problems before reading any record

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

    @property
    def api_key(self) -> str:
        return str(self.config["api_key"])

    @cached_property
    def options(self) -> Options:
        """The settings that shape identifications."""
        return Options(self.config.get("null_values", "unset"), self.config.get("deleted_records", "ignore"))

    @cached_property
    def client(self) -> AmplitudeClient:
        return AmplitudeClient(
            api_url=self.config.get("api_url") or REGION_URLS[self.config.get("region", "us")],
            api_key=self.api_key,
            stats=self.stats,
            max_concurrency=int(self.config.get("max_concurrency", 4)),
            max_retries=int(self.config.get("max_retries", 8)),
            request_timeout=float(self.config.get("request_timeout", 30)),
            max_backoff=float(self.config.get("max_backoff", 60)),
            on_rejected=self.write_rejected,
            logger=self.logger,
        )

    @cached_property
    def sender(self) -> BackgroundSender:
        return BackgroundSender(self.client)

    # -- side files ------------------------------------------------------------------------
    def _append_lines(self, path: str, lines: Iterable[str]) -> None:
        with self._file_lock, Path(path).open("a", encoding="utf-8") as handle:
            for line in lines:
                handle.write(line + "\n")

    def write_rejected(self, identification: dict[str, Any], status: int, reason: str) -> None:
        if path := self.config.get("rejected_file"):
            line = json.dumps(
                {"identification": identification, "status": status, "reason": reason}, ensure_ascii=False
            )
            self._append_lines(path, [line])

    def write_dry_run(self, lines: Iterable[str]) -> None:
        lines = list(lines)
        self.stats.add(requests=len(lines))
        if path := self.config.get("dry_run_file"):
            self._append_lines(path, lines)
        else:
            for line in lines:
                self.logger.info("dry run request: %s", line)

    # -- run lifecycle ---------------------------------------------------------------------
    def listen(self, file_input: IO[str] | None = None) -> None:
        """Read Singer messages; a final delivery failure ends the run with one clear line."""
        try:
            super().listen(file_input)
        except AmplitudeError as exc:
            self.logger.error("Delivery to Amplitude failed: %s", exc)
            self.logger.error("No STATE was emitted for unacknowledged records; the next run resends them")
            sys.exit(1)

    def drain_all(self, *, is_endofpipe: bool = False) -> None:
        """Drain as the SDK does; sinks retired by a schema change keep no carried tail."""
        for sink in self._sinks_to_clear:
            if isinstance(sink, AmplitudeGroupsSink):
                sink.retiring = True
        super().drain_all(is_endofpipe=is_endofpipe)

    def _deliver_everything(self) -> None:
        """Send every sink's carried tail and wait until Amplitude acknowledged it all."""
        for sink in [*self._sinks_to_clear, *self._sinks_active.values()]:
            if isinstance(sink, AmplitudeGroupsSink):
                sink.flush()
        self.sender.wait()

    def _write_state_message(self, state: dict) -> None:
        """STATE only once every record before it was acknowledged by Amplitude."""
        self._deliver_everything()
        super()._write_state_message(state)

    def process_endofpipe(self) -> None:
        """Drain everything (STATE follows acknowledgement), then summarise the run."""
        super().process_endofpipe()
        self._deliver_everything()
        summary = self.stats.as_dict()
        mode = " (dry run: nothing sent)" if self.config.get("dry_run") else ""
        counts = [
            _count(summary["groups_sent"], "group") + " sent in " + _count(summary["requests"], "request"),
            _count(summary["retries"], "retry", "retries"),
            f"{summary['throttled_seconds']:.1f}s throttled",
            f"{summary['skipped']} skipped",
            f"{summary['rejected']} rejected",
            _count(summary["deleted_ignored"], "deleted row") + " ignored",
            _count(summary["truncated"], "value") + " truncated",
        ]
        self.logger.info("Summary%s: %s", mode, ", ".join(counts))
        if path := self.config.get("report_file"):
            report = {"status": "ok", "dry_run": bool(self.config.get("dry_run")), **summary}
            Path(path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    TargetAmplitudeGroups.cli()
