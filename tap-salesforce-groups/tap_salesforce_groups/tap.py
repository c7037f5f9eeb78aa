"""tap-salesforce-groups: the Salesforce fields a groups mapping names, as Singer streams."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from functools import cached_property
from typing import IO, Any, ClassVar

import click
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from groups_mapping import (
    MAPPING_DESCRIPTION,
    MAPPING_FILE_DESCRIPTION,
    MappingConfig,
    MappingError,
    insecure_url,
    load_mapping,
)
from tap_salesforce_groups.auth import auth_flow, jwt_assertion
from tap_salesforce_groups.client import SalesforceClient
from tap_salesforce_groups.errors import SalesforceAuthError, SalesforceClientError
from tap_salesforce_groups.run import RunControl
from tap_salesforce_groups.schema import stream_spec
from tap_salesforce_groups.streams import SalesforceObjectStream, parse_datetime
from tap_salesforce_groups.token_store import DEFAULT_REFRESH_TOKEN_FILE
from tap_salesforce_groups.writer import FastSingerWriter

DEFAULT_API_VERSION = "62.0"


# The numeric settings: name, type with the range checked at start, default, description. Whole
# numbers: the SDK and Meltano pass integers from environment variables, not decimals.
TUNING: tuple[tuple[str, th.JSONTypeHelper[Any], int, str], ...] = (
    (
        "bulk_threshold",
        th.IntegerType(minimum=1),
        100000,
        "With api_type auto: rows to read from which an object uses Bulk API 2.0.",
    ),
    (
        "max_api_usage_percent",
        th.IntegerType(minimum=1, maximum=100),
        80,
        "Stop cleanly, state saved, once the org's daily API usage reaches this percentage "
        "(read from Sforce-Limit-Info).",
    ),
    ("request_timeout", th.IntegerType(minimum=1), 300, "Seconds per HTTP request."),
    (
        "max_retries",
        th.IntegerType(minimum=0),
        5,
        "Retries of a transient failure (5xx, 406, connection reset, timeout).",
    ),
    (
        "max_backoff",
        th.IntegerType(minimum=0),
        60,
        "Longest wait in seconds between retries (also caps a Retry-After).",
    ),
)


class TapSalesforceGroups(Tap):
    """Reads the Salesforce objects and fields named in a groups mapping."""

    name = "tap-salesforce-groups"
    dynamic_catalog = True  # discovery calls describe, so `--discover` checks credentials too
    # The SDK's msgspec writer: the same JSON lines, serialised in C (see docs/benchmarks.md).
    message_writer_class = FastSingerWriter

    config_jsonschema = th.PropertiesList(
        th.Property("client_id", th.StringType, description="Connected app consumer key."),
        th.Property(
            "client_secret", th.StringType, secret=True, description="Connected app consumer secret."
        ),
        th.Property(
            "refresh_token",
            th.StringType,
            secret=True,
            description="OAuth refresh token (with client_id and client_secret): the 'Connect to' flow.",
        ),
        th.Property(
            "refresh_token_file",
            th.StringType,
            default=DEFAULT_REFRESH_TOKEN_FILE,
            description="Where a rotated refresh token is kept (refresh token rotation): a 0600 JSON "
            "file, relative to the Meltano project (else the working directory). Never printed.",
        ),
        th.Property(
            "private_key",
            th.StringType,
            secret=True,
            description="PEM private key of the connected app's certificate, for the JWT bearer flow "
            "(with client_id and username).",
        ),
        th.Property(
            "username", th.StringType, description="Salesforce username (JWT bearer or legacy login)."
        ),
        th.Property("password", th.StringType, secret=True, description="Password (legacy login)."),
        th.Property(
            "security_token", th.StringType, secret=True, description="Security token (legacy login)."
        ),
        th.Property(
            "domain",
            th.StringType,
            default="login",
            description="'login' (production), 'test' (sandbox) or a My Domain host such as "
            "acme.my.salesforce.com (required for client credentials).",
        ),
        th.Property(
            "login_url",
            th.StringType,
            description="Full login URL overriding domain, e.g. https://127.0.0.1:8443 for an emulator "
            "(https only; http only for a loopback host).",
        ),
        th.Property(
            "instance_url",
            th.StringType,
            description="Override of the instance URL returned by login.",
        ),
        th.Property(
            "jwt_audience",
            th.StringType,
            description="JWT bearer audience override (default: https://test.salesforce.com for domain "
            "test or a *.sandbox.my.salesforce.com host, else https://login.salesforce.com).",
        ),
        th.Property(
            "api_version",
            th.StringType(pattern=r"^[0-9]{2}\.0$"),
            default=DEFAULT_API_VERSION,
            description="REST API version, such as 62.0.",
        ),
        th.Property(
            "start_date",
            th.DateTimeType,
            description="Only rows modified at or after this time (default: all history).",
        ),
        th.Property("mapping_file", th.StringType, description=MAPPING_FILE_DESCRIPTION),
        th.Property("mapping", th.ObjectType(), description=MAPPING_DESCRIPTION),
        th.Property(
            "api_type",
            th.StringType(allowed_values=["auto", "rest", "bulk"]),
            default="auto",
            description="auto, rest or bulk. auto uses Bulk API 2.0 for objects with at least "
            "bulk_threshold rows to read, and for field lists too long for a REST query URI.",
        ),
        th.Property(
            "include_deleted",
            th.BooleanType,
            default=True,
            description="Query with queryAll and emit soft-deleted rows with IsDeleted.",
        ),
        *(th.Property(name, kind, default=default, description=text) for name, kind, default, text in TUNING),
    ).to_dict()

    last_run: ClassVar[RunControl | None] = None  # the CLI's exit status comes from it

    def __init__(
        self,
        *,
        config: dict[str, Any] | None = None,
        catalog: dict[str, Any] | None = None,
        state: dict[str, Any] | None = None,
        parse_env_config: bool = False,
        validate_config: bool = True,
        setup_mapper: bool = True,
    ) -> None:
        super().__init__(
            config=config,
            catalog=catalog,
            state=state,
            parse_env_config=parse_env_config,
            validate_config=validate_config,
            setup_mapper=setup_mapper,
        )
        if validate_config:
            problems = self._state_problems()
            if problems:
                raise ConfigValidationError("state is invalid", errors=problems)
            self.run.install_signal_handlers()

    @cached_property
    def run(self) -> RunControl:
        """This run's stop reason and exit status, shared with the streams."""
        run = RunControl(self.logger)
        type(self).last_run = run
        return run

    @cached_property
    def mapping(self) -> MappingConfig:
        """The validated mapping; every problem is reported before any API call."""
        try:
            return load_mapping(self.config.get("mapping"), self.config.get("mapping_file"))
        except MappingError as exc:
            raise ConfigValidationError(f"{exc.source} is invalid", errors=exc.problems) from exc

    @cached_property
    def client(self) -> SalesforceClient:
        """The connection to the org; the settings are checked before its first call."""
        problems = settings_problems(self.config)
        if problems:
            raise ConfigValidationError("settings are invalid", errors=problems)
        return SalesforceClient(self.config, self.logger)

    def _state_problems(self) -> list[str]:
        """Bookmarks must parse; one in the future is a warning naming its stream."""
        problems = []
        now = datetime.now(timezone.utc)
        for stream, entry in (self.state.get("bookmarks") or {}).items():
            value = entry.get("replication_key_value") if isinstance(entry, dict) else None
            if value is None:
                continue
            try:
                when = parse_datetime(str(value))
            except ValueError:
                problems.append(f"state: bookmark of {stream} is not a timestamp: {str(value)[:40]!r}")
                continue
            if when > now:
                self.logger.warning(
                    "state: bookmark of %s is in the future (%s); rows changed before then are skipped",
                    stream,
                    value,
                )
        return problems

    # -- discovery and verification --------------------------------------------------------
    def discover_streams(self) -> list[Stream]:
        """One stream per mapped object: from the input catalog when it has it, else describe.

        Describing is also the verification against the org: every problem is collected and
        reported at once, one line each, before any query.
        """
        streams: list[Stream] = []
        problems: list[str] = []
        warnings: list[str] = []
        described = 0
        for name in self.mapping.objects:
            entry = self.input_catalog.get_stream(name) if self.input_catalog else None
            if entry is not None and _covers(entry.schema.to_dict(), self.mapping.fields_for(name)):
                streams.append(
                    self._stream(
                        name,
                        entry.schema.to_dict(),
                        list(entry.key_properties or []),
                        entry.replication_key,
                    )
                )
                continue
            described += 1
            try:
                spec = stream_spec(
                    self.mapping, name, self.client.describe, include_deleted=self.config["include_deleted"]
                )
            except SalesforceAuthError:
                raise
            except SalesforceClientError as exc:
                not_found = "NOT_FOUND" in str(exc)
                problems.append(
                    f"{name}: no such object, or not visible to this user" if not_found else f"{name}: {exc}"
                )
                continue
            problems += spec.problems
            warnings += spec.warnings
            if not spec.problems:
                streams.append(self._stream(name, spec.schema, spec.key_properties, spec.replication_key))
        for warning in warnings:
            self.logger.warning(warning)
        if problems:
            raise ConfigValidationError("mapping does not match the Salesforce org", errors=problems)
        fields = sum(len(s.schema["properties"]) for s in streams)
        if described:
            self.logger.info(
                "Mapping verified against the org: OK (%d objects, %d fields, %d warnings)",
                len(streams),
                fields,
                len(warnings),
            )
        return streams

    def _stream(
        self, name: str, schema: dict[str, Any], keys: list[str], replication_key: str | None
    ) -> SalesforceObjectStream:
        return SalesforceObjectStream(
            self,
            name=name,
            schema=schema,
            key_properties=keys,
            replication_key=replication_key,
            client=self.client,
            run=self.run,
        )

    # -- command line ------------------------------------------------------------------------
    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: Any = None,
        state: IO[str] | None = None,
        catalog: IO[str] | None = None,
    ) -> None:
        """Sync, then exit 1 on a failed stop, 130/143 on a signal, always after the state is written."""
        if state is not None:
            state = io.StringIO(_checked_state_text(state.read()))
        try:
            super().invoke(
                about=about, about_format=about_format, config=config, state=state, catalog=catalog
            )
        except SalesforceClientError as exc:
            cls._exit(str(exc), 1)
        run = cls.last_run
        if run is not None and run.exit_code:
            cls._exit(
                f"run stopped: {run.stopped_reason}; state written for the records emitted", run.exit_code
            )

    @classmethod
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:
        """``--test``: verify the mapping against the org, then read one row per object."""
        cls._clean_errors(super().cb_test, ctx, param, value)

    @classmethod
    def cb_discover(cls, ctx: click.Context, param: click.Option, value: bool) -> None:
        """``--discover``, reporting mapping problems as lines rather than a traceback."""
        cls._clean_errors(super().cb_discover, ctx, param, value)

    @classmethod
    def _clean_errors(cls, callback: Callable[..., None], ctx: click.Context, *args: Any) -> None:
        try:
            callback(ctx, *args)
        except ConfigValidationError as exc:
            for error in exc.errors:
                cls.logger.error(error)
            cls.logger.error("%s (%d problems)", exc, len(exc.errors))
            ctx.close()
            ctx.exit(1)
        except SalesforceClientError as exc:
            ctx.close()
            cls._exit(str(exc), 1)
        except BaseException:
            # Exiting from a callback skips click's cleanup: close the --state/--catalog files it opened.
            ctx.close()
            raise

    @classmethod
    def _exit(cls, message: str, code: int) -> None:
        """One clear error line and the exit status, no traceback for an expected failure."""
        cls.logger.error(message)
        sys.exit(code)


def settings_problems(config: Mapping[str, Any]) -> list[str]:
    """What the JSON schema cannot check: URL schemes, start_date, credentials, the JWT key."""
    problems = []
    for key in ("login_url", "instance_url"):
        url = config.get(key)
        if url and (problem := insecure_url(key, str(url))):
            problems.append(problem)
    if config.get("start_date"):
        try:
            parse_datetime(str(config["start_date"]))
        except ValueError:
            problems.append(f"start_date is not an ISO 8601 timestamp: {str(config['start_date'])[:40]!r}")
    try:
        if auth_flow(config) == "jwt":
            jwt_assertion(config)
    except SalesforceAuthError as exc:
        problems.append(str(exc))
    return problems


def _checked_state_text(text: str) -> str:
    """``--state`` must hold a JSON object; anything else is one line, not a traceback."""
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ConfigValidationError("--state is invalid", errors=[f"--state is not JSON: {exc}"]) from exc
    if not isinstance(value, dict):
        raise ConfigValidationError("--state is invalid", errors=["--state must hold a JSON object"])
    return text


def _covers(schema: dict[str, Any], fields: tuple[str, ...]) -> bool:
    """Whether a catalog schema has every mapped field (Salesforce names ignore case)."""
    have = {p.lower() for p in schema.get("properties", {})}
    return all(f.lower() in have for f in fields)


if __name__ == "__main__":
    TapSalesforceGroups.cli()
