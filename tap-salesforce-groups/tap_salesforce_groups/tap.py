"""tap-salesforce-groups: the Salesforce fields a groups mapping names, as Singer streams."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from functools import cached_property
from typing import IO, Any, cast

import click
from singer_sdk import Stream, Tap
from singer_sdk.exceptions import ConfigValidationError

from groups_mapping import MappingConfig, MappingError, load_mapping, signed_description
from tap_salesforce_groups.client import SalesforceClient
from tap_salesforce_groups.core import connect, resolve_objects
from tap_salesforce_groups.errors import RunStopped, SalesforceClientError
from tap_salesforce_groups.run import PARTIAL_KEY, RunControl
from tap_salesforce_groups.sdk import hide_unsorted_warning
from tap_salesforce_groups.settings import CONFIG_JSONSCHEMA
from tap_salesforce_groups.streams import EMITTED, LEGACY_EMITTED, SalesforceObjectStream
from tap_salesforce_groups.timestamps import parse_datetime
from tap_salesforce_groups.writer import FastSingerWriter


class TapSalesforceGroups(Tap):
    """Reads the Salesforce objects and fields named in a groups mapping."""

    name = "tap-salesforce-groups"
    dynamic_catalog = True  # discovery calls describe, so `--discover` checks credentials too
    # The SDK's msgspec writer: the same JSON lines, serialised in C (see docs/benchmarks.md).
    message_writer_class = FastSingerWriter

    config_jsonschema = CONFIG_JSONSCHEMA  # settings.py: shared with the mapping command line and editor

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
            catalog=_signed_catalog(catalog),
            state=state,
            parse_env_config=parse_env_config,
            validate_config=validate_config,
            setup_mapper=setup_mapper,
        )
        hide_unsorted_warning()  # installed by the tap when it runs, not when a module is imported
        if validate_config:
            problems = self._state_problems()
            if problems:
                raise ConfigValidationError("state is invalid", errors=problems)
            self.run.install_signal_handlers()

    @cached_property
    def run(self) -> RunControl:
        """This run's stop reason and exit status, shared with the streams."""
        run = RunControl(self.logger)
        run.state = cast("dict[str, Any]", self.state)  # the dict the SDK writes as STATE
        return run

    unread_first: tuple[str, ...] = ()  # objects the last run stopped before reading

    def load_state(self, state: dict[str, Any]) -> None:
        """The SDK's bookmarks, and which objects a run stopped by a limit did not read."""
        super().load_state(state)
        partial = state.get(PARTIAL_KEY)
        if isinstance(partial, dict) and isinstance(partial.get("unread"), list):
            self.unread_first = tuple(str(name) for name in partial["unread"])
        if partial is not None:
            # Meltano merges a run's STATE into the stored one key by key: the mark of the
            # partial run must be overwritten, not just left out.
            cast("dict[str, Any]", self.state)[PARTIAL_KEY] = None

    @property
    def streams(self) -> dict[str, Stream]:
        """The SDK's streams (sorted by name), those the last run did not get to first.

        A run stopped by a limit lists the objects it did not read in its STATE; reading them
        first means one object that keeps the org near its budget cannot starve the others.
        The SDK syncs in this dict's order.
        """
        streams = super().streams
        first = [name for name in self.unread_first if name in streams]
        if first and list(streams)[: len(first)] != first:
            ordered = {name: streams[name] for name in first} | streams
            streams.clear()
            streams.update(ordered)
            self.logger.info(
                "Reading %s first: the last run stopped before reading %s",
                ", ".join(first),
                "it" if len(first) == 1 else "them",
            )
        return streams

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
        client = connect(self.config, self.logger)
        client.stopping = self.run.stopping  # a signal ends its waits between Bulk polls
        return client

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
        streams: dict[str, Stream] = {}
        for name in self.mapping.objects:
            entry = self.input_catalog.get_stream(name) if self.input_catalog else None
            if entry is not None and _covers(entry.schema.to_dict(), self.mapping.fields_for(name)):
                schema = entry.schema.to_dict()
                keys = list(entry.key_properties or [])
                streams[name] = self._stream(name, schema, keys, entry.replication_key)
        to_describe = [name for name in self.mapping.objects if name not in streams]
        if self.input_catalog and to_describe:
            # Meltano's cached catalog after the mapping file was edited: the SDK would skip a new
            # object as deselected, or fail on a new field ("stream 'Account' has no field …").
            msg = (
                f"the catalog given lacks mapped {', '.join(to_describe)} (or some of their fields): "
                "it is older than the mapping; discover again (meltano run --refresh-catalog, or the "
                "extractor's use_cached_catalog: false, as this project sets)"
            )
            raise ConfigValidationError("mapping does not match the catalog", errors=[msg])
        resolved = resolve_objects(
            self.mapping, self.client.describe, to_describe, include_deleted=self.config["include_deleted"]
        )
        for warning in resolved.warnings:
            self.logger.warning(warning)
        resolved.raise_problems()
        for spec in resolved.specs:
            streams[spec.name] = self._stream(
                spec.name, spec.schema, spec.key_properties, spec.replication_key
            )
        ordered = [streams[name] for name in self.mapping.objects]
        if to_describe:
            self.logger.info(
                "Mapping verified against the org: OK (%d objects, %d fields, %d warnings)",
                len(ordered),
                sum(len(s.schema["properties"]) for s in ordered),
                len(resolved.warnings),
            )
        return ordered

    def _stream(
        self, name: str, schema: dict[str, Any], keys: list[str], replication_key: str | None
    ) -> SalesforceObjectStream:
        return SalesforceObjectStream(
            self,
            name=name,
            # Signed, so that a target left without the mapping refuses it (groups_mapping.is_signed).
            schema={**schema, "description": signed_description(name)},
            key_properties=keys,
            replication_key=replication_key,
            client=self.client,
            run=self.run,
            groups=[(m.group_type, m.group_name_field) for m in self.mapping.for_object(name)],
            properties=[
                (m.group_type, p.field, p.property)
                for m in self.mapping.for_object(name)
                for p in m.properties
            ],
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
        if about:
            super().invoke(about=about, about_format=about_format)  # prints, then exits
        # Tap.invoke's steps, keeping the instance: its run says how the sync ended.
        cls.print_version(print_fn=cls.logger.info)
        try:
            tap = cls(
                config=config.config if config is not None else {},
                state=None if state is None else _checked_state(state.read()),
                catalog=None if catalog is None else json.loads(catalog.read(), parse_float=Decimal),
                parse_env_config=config.parse_env if config is not None else False,
                validate_config=True,
            )
            tap.sync_all()
            tap.run.raise_if_stopped()
        except SalesforceClientError as exc:
            cls._exit(str(exc), 1)
        except RunStopped as exc:
            cls._exit(str(exc), exc.exit_code)

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


def _checked_state(text: str) -> dict[str, Any]:
    """``--state`` must hold a JSON object; anything else is one line, not a traceback."""
    try:
        value = json.loads(text, parse_float=Decimal) if text.strip() else {}
    except ValueError as exc:
        raise ConfigValidationError("--state is invalid", errors=[f"--state is not JSON: {exc}"]) from exc
    if not isinstance(value, dict):
        raise ConfigValidationError("--state is invalid", errors=["--state must hold a JSON object"])
    if problems := state_shape_problems(value):
        raise ConfigValidationError("--state is invalid", errors=problems)
    return value


def state_shape_problems(state: dict[str, Any]) -> list[str]:
    """What in a state does not have the shape this tap writes: one line each, naming the stream."""
    bookmarks = state.get("bookmarks")
    if bookmarks is None:
        return []
    if not isinstance(bookmarks, dict):
        return [f"--state: 'bookmarks' must be an object of streams, not {type(bookmarks).__name__}"]
    problems = []
    for stream, entry in bookmarks.items():
        if not isinstance(entry, dict):
            problems.append(
                f"--state: the bookmark of {stream} must be an object, not {type(entry).__name__}"
            )
            continue
        ids = entry.get(LEGACY_EMITTED)
        if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
            problems.append(
                f"--state: {LEGACY_EMITTED} of {stream} must be a list of Ids, not {type(ids).__name__}"
            )
        pairs = entry.get(EMITTED)  # {Id: stamp}, kept as [{Id: stamp}] (streams.Memory)
        if isinstance(pairs, list) and len(pairs) == 1:
            pairs = pairs[0]
        if pairs is not None and not (
            isinstance(pairs, dict) and all(isinstance(v, str) for v in pairs.values())
        ):
            problems.append(
                f"--state: {EMITTED} of {stream} must map Ids to timestamps, not {type(pairs).__name__}"
            )
        value = entry.get("replication_key_value")
        if value is not None and not isinstance(value, str):
            problems.append(
                f"--state: the bookmark of {stream} must be a timestamp string, not {type(value).__name__}"
            )
    return problems


def _signed_catalog(catalog: dict[str, Any] | None) -> dict[str, Any] | None:
    """The input catalog with each stream's schema signed (``groups_mapping.is_signed``).

    The SDK sends the input catalog's schema in SCHEMA messages; a catalog saved before the
    signature existed (or edited by hand) must not let this tap's streams go out unsigned.
    """
    if not isinstance(catalog, dict):
        return catalog
    streams = []
    for entry in catalog.get("streams") or []:
        if isinstance(entry, dict) and isinstance(entry.get("schema"), dict):
            name = str(entry.get("tap_stream_id") or entry.get("stream"))
            streams.append({**entry, "schema": {**entry["schema"], "description": signed_description(name)}})
        else:
            streams.append(entry)
    return {**catalog, "streams": streams}


def _covers(schema: dict[str, Any], fields: tuple[str, ...]) -> bool:
    """Whether a catalog schema has every mapped field (Salesforce names ignore case)."""
    have = {p.lower() for p in schema.get("properties", {})}
    return all(f.lower() in have for f in fields)


if __name__ == "__main__":
    TapSalesforceGroups.cli()
