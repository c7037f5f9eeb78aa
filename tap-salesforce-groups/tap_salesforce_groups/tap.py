"""tap-salesforce-groups: the Salesforce fields a groups mapping names, as Singer streams."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import cached_property
from typing import Any

import click
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from groups_mapping import (
    MAPPING_DESCRIPTION,
    MAPPING_FILE_DESCRIPTION,
    MappingConfig,
    MappingError,
    load_mapping,
)
from tap_salesforce_groups.client import SalesforceAuthError, SalesforceClient, SalesforceClientError
from tap_salesforce_groups.schema import (
    FieldProblem,
    ResolvedField,
    group_name_warnings,
    replication_key_for,
    resolve_field,
)
from tap_salesforce_groups.streams import SalesforceObjectStream
from tap_salesforce_groups.writer import FastSingerWriter

DEFAULT_API_VERSION = "62.0"


class TapSalesforceGroups(Tap):
    """Reads the Salesforce objects and fields named in a groups mapping."""

    name = "tap-salesforce-groups"
    dynamic_catalog = True  # discovery calls describe, so `--discover` checks credentials too
    # The SDK's msgspec writer: the same JSON lines, serialised in C (see README "Benchmarks").
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
            description="Full login URL overriding domain, e.g. https://127.0.0.1:8443 for an emulator.",
        ),
        th.Property(
            "instance_url",
            th.StringType,
            description="Override of the instance URL returned by login.",
        ),
        th.Property(
            "api_version", th.StringType, default=DEFAULT_API_VERSION, description="REST API version."
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
            description="auto, rest or bulk. auto uses Bulk API 2.0 for objects with at least bulk_threshold rows to read; objects with compound (address, location) fields always use REST.",
        ),
        th.Property(
            "bulk_threshold",
            th.IntegerType,
            default=100000,
            description="With api_type auto: rows to read from which an object uses Bulk API 2.0.",
        ),
        th.Property(
            "max_api_usage_percent",
            th.IntegerType,
            default=80,
            description="Stop cleanly, state saved, once the org's daily API usage reaches this percentage "
            "(read from Sforce-Limit-Info).",
        ),
        th.Property(
            "include_deleted",
            th.BooleanType,
            default=True,
            description="Query with queryAll and emit soft-deleted rows with IsDeleted.",
        ),
        th.Property("request_timeout", th.IntegerType, default=300, description="Seconds per HTTP request."),
        th.Property(
            "max_retries",
            th.IntegerType,
            default=5,
            description="Retries of a transient failure (5xx, 406, connection reset, timeout).",
        ),
    ).to_dict()

    stopped_reason: str | None = None
    failed: bool = False

    @cached_property
    def mapping(self) -> MappingConfig:
        """The validated mapping; every problem is reported before any API call."""
        try:
            return load_mapping(self.config.get("mapping"), self.config.get("mapping_file"))
        except MappingError as exc:
            raise ConfigValidationError(f"{exc.source} is invalid", errors=exc.problems) from exc

    @cached_property
    def client(self) -> SalesforceClient:
        return SalesforceClient(self.config, self.logger)

    def stop(self, reason: str, *, failed: bool = False) -> None:
        """End the run after the current stream: state so far is kept."""
        self.stopped_reason = reason
        self.failed = self.failed or failed
        (self.logger.error if failed else self.logger.warning)("Stopping: %s", reason)

    # -- discovery and verification --------------------------------------------------------
    def discover_streams(self) -> list[Stream]:
        """One stream per mapped object: from the input catalog when it has it, else describe.

        Describing is also the verification against the org: every problem is collected and
        reported at once, one line each, before any query.
        """
        mapping = self.mapping
        catalog = self.input_catalog
        streams: list[Stream] = []
        problems: list[str] = []
        warnings: list[str] = []
        for name in mapping.objects:
            entry = catalog.get_stream(name) if catalog else None
            if entry is not None and set(mapping.fields_for(name)) <= set(
                entry.schema.to_dict()["properties"]
            ):
                streams.append(
                    SalesforceObjectStream(
                        self,
                        name=name,
                        schema=entry.schema.to_dict(),
                        key_properties=list(entry.key_properties or []),
                        replication_key=entry.replication_key,
                    )
                )
                continue
            try:
                stream = self._describe_stream(name, problems, warnings)
            except SalesforceAuthError as exc:
                self._fail(str(exc))
            except SalesforceClientError as exc:
                not_found = "NOT_FOUND" in str(exc)
                problems.append(
                    f"{name}: no such object, or not visible to this user" if not_found else f"{name}: {exc}"
                )
                continue
            if stream is not None:
                streams.append(stream)
        for warning in warnings:
            self.logger.warning(warning)
        if problems:
            raise ConfigValidationError("mapping does not match the Salesforce org", errors=problems)
        fields = sum(len(s.schema["properties"]) for s in streams)
        self.logger.info(
            "Mapping verified against the org: OK (%d objects, %d fields, %d warnings)",
            len(streams),
            fields,
            len(warnings),
        )
        return streams

    def _describe_stream(
        self, name: str, problems: list[str], warnings: list[str]
    ) -> SalesforceObjectStream | None:
        mapping = self.mapping
        describe = self.client.describe(name)
        if not describe.get("queryable", True):
            problems.append(f"{name}: object is not queryable")
            return None
        names = [f["name"] for f in describe["fields"]]
        replication_key = replication_key_for(names)
        extra = ["Id", *([replication_key] if replication_key else [])]
        if self.config.get("include_deleted", True) and "IsDeleted" in names:
            extra.append("IsDeleted")
        resolved: dict[str, ResolvedField] = {}
        for path in dict.fromkeys([*mapping.fields_for(name), *extra]):
            try:
                resolved[path] = resolve_field(name, path, self.client.describe)
            except FieldProblem as exc:
                problems.append(str(exc))
        for m in mapping.for_object(name):
            if m.group_name_field in resolved:
                warnings += group_name_warnings(m, resolved[m.group_name_field].describe)
        properties = {path: r.schema for path, r in resolved.items()}
        if "Id" in properties:
            properties["Id"] = {"type": "string"}
        name_fields = {m.group_name_field for m in mapping.for_object(name)}
        key = [name_fields.pop()] if len(name_fields) == 1 else ["Id"]
        schema = {"type": "object", "properties": properties}
        return SalesforceObjectStream(
            self, name=name, schema=schema, key_properties=key, replication_key=replication_key
        )

    @classmethod
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:
        """``--test``: verify the mapping against the org, then read one row per object."""
        cls._clean_config_errors(super().cb_test, ctx, param, value)

    @classmethod
    def cb_discover(cls, ctx: click.Context, param: click.Option, value: bool) -> None:
        """``--discover``, reporting mapping problems as lines rather than a traceback."""
        cls._clean_config_errors(super().cb_discover, ctx, param, value)

    @classmethod
    def _clean_config_errors(cls, callback: Callable[..., None], ctx: click.Context, *args: Any) -> None:
        try:
            callback(ctx, *args)
        except ConfigValidationError as exc:
            for error in exc.errors:
                cls.logger.error(error)
            cls.logger.error("%s (%d problems)", exc, len(exc.errors))
            ctx.close()
            ctx.exit(1)
        except BaseException:
            # Exiting from a callback skips click's cleanup: close the --state/--catalog files it opened.
            ctx.close()
            raise

    # -- sync ------------------------------------------------------------------------------
    def sync_all(self) -> None:
        """Sync every stream; a request-limit stop fails the run after the state is written."""
        try:
            super().sync_all()
        except SalesforceClientError as exc:
            self._fail(str(exc))
        finally:
            self._log_api_usage()
        if self.failed:
            self._fail(self.stopped_reason or "stopped")

    def _log_api_usage(self) -> None:
        if "client" not in self.__dict__:  # never logged in
            return
        client = self.client
        usage = f"; org daily usage {client.usage[0]}/{client.usage[1]}" if client.usage else ""
        self.logger.info("Salesforce requests this run: %d%s", client.requests_made, usage)

    def _fail(self, message: str) -> None:
        """One clear error line and exit status 1 (no traceback for an expected failure)."""
        self.logger.error(message)
        sys.exit(1)


if __name__ == "__main__":
    TapSalesforceGroups.cli()
