"""The editor's one door into the tap: login, describe, field choices and verification.

Everything the editor needs from the tap's internals goes through this module, so that a
change in how the tap is split into modules is re-wired here and nowhere else.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from singer_sdk.exceptions import ConfigValidationError

from groups_mapping import GroupMapping
from tap_salesforce_groups.client import SalesforceClient
from tap_salesforce_groups.errors import SalesforceClientError
from tap_salesforce_groups.schema import FieldProblem, group_name_warnings, json_type, resolve_field
from tap_salesforce_groups.tap import TapSalesforceGroups

__all__ = ["Org", "OrgError", "Verification", "property_label"]

# Describe of a polymorphic lookup's targets: SOQL reads such a hop (Owner.Name on Case) through
# the "Name" object, whose fields are the only ones it allows without TYPEOF.
# https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_name.htm
NAME_OBJECT = "Name"


class OrgError(Exception):
    """The org could not answer (login, network, or an object that is not there)."""


@dataclass
class Verification:
    """What ``verify`` found: problems block saving, warnings do not."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: str = ""


def property_label(object_name: str, path: str, describe: Callable[[str], dict[str, Any]]) -> str:
    """Amplitude's UI names a property after the field label; a path is prefixed by its hops."""
    resolved = resolve_field(object_name, path, describe)
    hops = path.split(".")[:-1]
    return " ".join([*hops, resolved.describe.get("label") or resolved.describe["name"]])


def _is_polymorphic(ref: Mapping[str, Any]) -> bool:
    return bool(
        ref.get("polymorphicForeignKey") or ref.get("namePointing") or len(ref.get("referenceTo") or []) > 1
    )


class _Capture(logging.Handler):
    """Collects the tap logger's warnings and errors during one verification."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.warnings: list[str] = []
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        target = self.errors if record.levelno >= logging.ERROR else self.warnings
        target.append(record.getMessage())


class Org:
    """One logged-in connection to the configured org, shared by every request of the editor."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        self._lock = threading.Lock()  # one verification at a time: it borrows the tap's logger
        try:
            self.client = SalesforceClient(self.settings, TapSalesforceGroups.logger)
        except SalesforceClientError as exc:
            raise OrgError(str(exc)) from exc

    def login(self) -> None:
        """Log in now, so that bad settings stop the editor before it serves anything."""
        try:
            self.client.login()
        except SalesforceClientError as exc:
            raise OrgError(str(exc)) from exc

    def describe(self, name: str) -> dict[str, Any]:
        try:
            return self.client.describe(name)
        except SalesforceClientError as exc:
            raise OrgError(str(exc)) from exc

    def objects(self) -> list[dict[str, Any]]:
        """The queryable objects of the org (global describe), by label."""
        try:
            # simple-salesforce's describe() is the global describe: GET /sobjects/.
            listing = self.client.sf.describe() or {}
        except Exception as exc:  # any failure of the call is reported as one line
            raise OrgError(f"list objects: {exc.__class__.__name__}: {exc}") from exc
        return sorted(
            (
                {"name": o["name"], "label": o.get("label") or o["name"], "custom": bool(o.get("custom"))}
                for o in listing.get("sobjects", [])
                if o.get("queryable")
            ),
            key=lambda o: (o["label"].lower(), o["name"]),
        )

    def fields(self, object_name: str) -> list[dict[str, Any]]:
        """Importable fields of the object and, one hop away, of the objects its lookups name."""
        describe = self.describe(object_name)
        if not describe.get("queryable", True):
            raise OrgError(f"{object_name}: object is not queryable")
        return field_choices(object_name, self.describe)

    def verify(self, document: Any) -> Verification:
        """The tap's own verification (what ``verify`` runs), for a mapping that is not saved yet."""
        config = {k: v for k, v in self.settings.items() if k not in ("mapping", "mapping_file")}
        config["mapping"] = document
        tap = TapSalesforceGroups(config=config, validate_config=False, setup_mapper=False)
        tap.client = self.client  # reuse the session (and its describe cache) of this editor
        with self._lock, self._captured() as capture:
            try:
                streams = tap.discover_streams()
            except ConfigValidationError as exc:
                return Verification(list(exc.errors) or [str(exc)], capture.warnings)
            except SystemExit:  # the tap stops on a login failure after logging why
                return Verification(capture.errors or ["cannot log in to Salesforce"], capture.warnings)
        fields = sum(len(s.schema["properties"]) for s in streams)
        summary = (
            f"Mapping verified against the org: OK ({len(streams)} objects, {fields} fields, "
            f"{len(capture.warnings)} warnings)"
        )
        return Verification([], capture.warnings, summary)

    @contextmanager
    def _captured(self) -> Iterator[_Capture]:
        capture = _Capture()
        logger = TapSalesforceGroups.logger
        logger.addHandler(capture)
        try:
            yield capture
        finally:
            logger.removeHandler(capture)


def field_choices(object_name: str, describe: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    """Every field path the tap can read for ``object_name``, each with its default property name.

    Direct fields first, then one hop through each lookup (``Owner.Name``). A polymorphic lookup
    offers the fields of the Name object that the tap can resolve. Group name warnings are the
    tap's own (:func:`group_name_warnings`), with the mapping label left off.
    """
    own = describe(object_name)["fields"]
    paths: list[str] = [f["name"] for f in own if json_type(f) is not None]
    for ref in own:
        relationship = ref.get("relationshipName")
        targets = ref.get("referenceTo") or []
        if not relationship or not targets:
            continue
        try:
            target = describe(NAME_OBJECT if _is_polymorphic(ref) else targets[0])["fields"]
        except OrgError:
            continue  # a lookup to an object this user cannot describe offers nothing
        paths += [f"{relationship}.{f['name']}" for f in target if json_type(f) is not None]
    choices = []
    for path in paths:
        try:
            resolved = resolve_field(object_name, path, describe)
        except (FieldProblem, OrgError):
            continue  # offer only what verify accepts
        info = resolved.describe
        probe = GroupMapping(1, object_name, "group", path, ())
        prefix = f"{probe.label}: "
        choices.append(
            {
                "path": path,
                "label": info.get("label") or info["name"],
                "property": property_label(object_name, path, describe),
                "type": info.get("type"),
                "relationship": "." in path,
                "name_warnings": [w.removeprefix(prefix) for w in group_name_warnings(probe, info)],
            }
        )
    return choices
