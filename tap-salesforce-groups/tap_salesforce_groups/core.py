"""The tap's core, shared by the Singer tap, the mapping command line and the editor.

Plain functions with no process-wide side effects: no signal handlers, nothing written to
stdout, no class-level state. Logging in (:func:`connect`), resolving the mapping against the
org's describe (:func:`resolve_objects`), verifying it (:func:`verify`) and reading a sample row
(:func:`read_sample`) all live here; ``tap.py`` is the Singer adapter over them, and the only
place a ``Tap`` is built is the Singer entry point (``tap-salesforce-groups``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from singer_sdk.exceptions import ConfigValidationError

from groups_mapping import MappingConfig, MappingError, load_mapping
from tap_salesforce_groups.changes import mapping_changes
from tap_salesforce_groups.client import SalesforceClient
from tap_salesforce_groups.errors import BulkNotSupported, SalesforceAuthError, SalesforceClientError, StopRun
from tap_salesforce_groups.schema import StreamSpec, stream_spec
from tap_salesforce_groups.settings import settings_problems
from tap_salesforce_groups.soql import MAX_URI_BYTES, build_soql

# The tap's logger: the SDK configures it (level, format) when the Singer tap runs; elsewhere
# its warnings reach stderr through Python's last-resort handler.
LOGGER = logging.getLogger("tap-salesforce-groups")


def connect(settings: Mapping[str, Any], logger: logging.Logger = LOGGER) -> SalesforceClient:
    """A client for the configured org (logging in on its first call); settings are checked first.

    Raises:
        ConfigValidationError: settings the schema cannot check are wrong, one problem per error.
    """
    problems = settings_problems(settings)
    if problems:
        raise ConfigValidationError("settings are invalid", errors=problems)
    return SalesforceClient(settings, logger)


@dataclass
class Resolution:
    """The mapped objects as the org describes them: specs of the good ones, and every problem."""

    specs: list[StreamSpec] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def raise_problems(self) -> None:
        """Raise every problem at once, one line each, before any query."""
        if self.problems:
            raise ConfigValidationError("mapping does not match the Salesforce org", errors=self.problems)


def resolve_objects(
    mapping: MappingConfig,
    describe: Callable[[str], dict[str, Any]],
    names: Iterable[str],
    *,
    include_deleted: bool,
) -> Resolution:
    """Verify the named mapped objects against describe: schemas, keys and every problem found.

    Raises:
        SalesforceAuthError: login failed (nothing else can be checked).
        SalesforceClientError: a describe failed for another reason than a missing object.
    """
    result = Resolution()
    for name in names:
        try:
            spec = stream_spec(mapping, name, describe, include_deleted=include_deleted)
        except SalesforceAuthError:
            raise
        except SalesforceClientError as exc:
            if "NOT_FOUND" not in str(exc):
                # Not the mapping's fault (the org's API limit reached, a lost connection): one
                # line saying so, not "mapping does not match the Salesforce org".
                raise SalesforceClientError(f"{name}: {exc}") from exc
            result.problems.append(f"{name}: no such object, or not visible to this user")
            continue
        result.problems += spec.problems
        result.warnings += spec.warnings
        if not spec.problems:
            result.specs.append(spec)
    return result


def read_sample(client: SalesforceClient, spec: StreamSpec, settings: Mapping[str, Any]) -> int:
    """Read one row of the object as the tap's ``--test`` does (same API choice); the rows read.

    REST unless ``api_type`` is bulk, or the field list makes the REST URI too long (then Bulk
    API 2.0, as a sync would).

    Raises:
        SalesforceClientError: the query failed, or needs Bulk while ``api_type`` is rest.
    """
    fields = list(spec.schema.get("properties", {}))
    key = spec.replication_key
    include_deleted = bool(settings.get("include_deleted", True)) and "IsDeleted" in fields
    size = client.rest_request_bytes(build_soql(spec.name, fields, replication_key=key))
    bulk = settings.get("api_type") == "bulk" or size > MAX_URI_BYTES
    if size > MAX_URI_BYTES and settings.get("api_type") == "rest":
        msg = (
            f"{spec.name}: the REST query request (URI and headers) would be {size} bytes, above "
            f"Salesforce's {MAX_URI_BYTES}; set api_type to auto or bulk for this many fields"
        )
        raise SalesforceClientError(msg)
    if bulk:
        try:
            return _bulk_sample(client, spec, fields, include_deleted)
        except BulkNotSupported as exc:
            if size > MAX_URI_BYTES:
                raise
            LOGGER.warning("%s: %s; reading it through REST instead", spec.name, exc)
    soql = build_soql(spec.name, fields, replication_key=key, limit=1)
    rows = 0
    for page in client.query_pages(soql, include_deleted=include_deleted):
        rows += len(page)
        break
    return rows


def _bulk_sample(client: SalesforceClient, spec: StreamSpec, fields: list[str], include_deleted: bool) -> int:
    """One row through a Bulk API 2.0 job; the rows read."""
    soql = build_soql(spec.name, fields, replication_key=spec.replication_key, limit=1, ordered=False)
    pages = client.bulk_pages(spec.name, soql, include_deleted=include_deleted)
    try:
        return sum(max(0, len(page.splitlines()) - 1) for page in pages)
    finally:
        close = getattr(pages, "close", None)
        if close is not None:
            close()


@dataclass
class Verification:
    """What ``verify`` found: problems block saving, warnings do not."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: str = ""
    header: str = ""  # what the command line prints above the problems


def previous_mapping(settings: Mapping[str, Any]) -> MappingConfig | None:
    """The version of ``mapping_file`` before the last save (the editor keeps it as ``.bak``)."""
    path = settings.get("mapping_file")
    backup = Path(str(path) + ".bak") if path else None
    if backup is None or not backup.is_file():
        return None
    try:
        return load_mapping(None, str(backup))
    except MappingError:
        return None


def verify(
    settings: Mapping[str, Any],
    client: SalesforceClient | None = None,
    logger: logging.Logger = LOGGER,
    previous: MappingConfig | None = None,
) -> Verification:
    """What ``verify`` checks.

    The mapping offline, then against the org (describe), then one row read per object (the tap's connection
    test). ``client`` reuses a logged-in session; ``previous`` (the mapping before) adds what the change does
    to the groups in Amplitude.

    Every failure is returned as problems, none raised (a signal's exception still propagates).
    """
    try:
        mapping = load_mapping(settings.get("mapping"), settings.get("mapping_file"))
    except MappingError as exc:
        return Verification(exc.problems, header=exc.report().splitlines()[0])
    warnings: list[str] = []
    try:
        client = client or connect(settings, logger)
        resolved = resolve_objects(
            mapping,
            client.describe,
            mapping.objects,
            include_deleted=bool(settings.get("include_deleted", True)),
        )
        warnings = resolved.warnings
        resolved.raise_problems()
        for spec in resolved.specs:
            read_sample(client, spec, settings)
    except ConfigValidationError as exc:
        return Verification(list(exc.errors) or [str(exc)], warnings, header=f"{exc}:")
    except StopRun as exc:
        return Verification([str(exc)], warnings, header="Verification stopped:")
    except SalesforceClientError as exc:
        return Verification([str(exc)], warnings, header="Cannot read the org:")
    summary = f"Mapping verified against the org: OK ({len(resolved.specs)} objects, one row of each read)."
    return Verification([], warnings + mapping_changes(previous, mapping), summary)
