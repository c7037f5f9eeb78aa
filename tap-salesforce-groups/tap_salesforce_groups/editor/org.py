"""The editor's one door into the tap: login, describe, field choices and verification.

Everything the editor needs from the tap's internals goes through this module, so that a
change in how the tap is split into modules is re-wired here and nowhere else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import requests
from singer_sdk.exceptions import ConfigValidationError

from groups_mapping import GroupMapping, MappingConfig
from tap_salesforce_groups.client import SalesforceClient
from tap_salesforce_groups.connect import connected_line
from tap_salesforce_groups.core import Verification, connect, verify
from tap_salesforce_groups.errors import SalesforceClientError
from tap_salesforce_groups.schema import (
    NAME_OBJECT_FIELDS,
    FieldProblem,
    group_name_warnings,
    json_type,
    resolve_field,
)
from tap_salesforce_groups.settings import resolve

__all__ = ["Org", "OrgError", "Verification", "property_label", "run_verification"]


class OrgError(Exception):
    """The org could not answer (login, network, or an object that is not there)."""


def property_label(object_name: str, path: str, describe: Callable[[str], dict[str, Any]]) -> str:
    """Amplitude's UI names a property after the field label; a path is prefixed by its hops."""
    resolved = resolve_field(object_name, path, describe)
    hops = path.split(".")[:-1]
    return " ".join([*hops, resolved.describe.get("label") or resolved.describe["name"]])


def _is_polymorphic(ref: Mapping[str, Any]) -> bool:
    """As the tap's resolve_field decides it: several targets, or Salesforce says so."""
    return len(ref.get("referenceTo") or []) > 1 or bool(ref.get("polymorphicForeignKey"))


class Org:
    """One logged-in connection to the configured org, shared by every request of the editor."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = resolve(settings)  # the defaults filled in, as the client expects them
        self._lock = threading.Lock()  # one verification at a time: each reads a row of every object
        try:
            self.client = connect(self.settings)
        except ConfigValidationError as exc:
            raise OrgError("; ".join(exc.errors)) from exc
        except SalesforceClientError as exc:
            raise OrgError(str(exc)) from exc

    def login(self) -> None:
        """Log in now, so that bad settings stop the editor before it serves anything."""
        try:
            self.client.login()
        except SalesforceClientError as exc:
            raise OrgError(str(exc)) from exc

    def identity(self) -> str:
        """``Connected to <org host> as <username> (<email>)``: who this session runs as.

        The REST API's Resources by Version lists the user's identity URL ("identity"), which
        answers ``username`` and ``email`` for the session's token (REST API Developer Guide,
        "List Available REST Resources"; Salesforce Help, "Identity URLs").
        """
        client = self.client
        try:
            resources = client.call("who am I", lambda: client.sf.restful("", timeout=client.timeout)) or {}
            answer = client.session.get(
                str(resources["identity"]),
                headers={"Authorization": f"Bearer {client.sf.session_id}", "Accept": "application/json"},
                timeout=client.timeout,
            )
            who = answer.json() if answer.status_code == 200 else {}
            return connected_line(client.sf.base_url, str(who["username"]), who.get("email"))
        except (SalesforceClientError, requests.RequestException, KeyError, ValueError, TypeError) as exc:
            raise OrgError(f"cannot read who is connected: {exc.__class__.__name__}: {exc}") from exc

    def describe(self, name: str) -> dict[str, Any]:
        """The object's describe, as the tap's client caches it."""
        try:
            return self.client.describe(name)
        except SalesforceClientError as exc:
            raise OrgError(str(exc)) from exc

    def objects(self) -> list[dict[str, Any]]:
        """The queryable objects of the org (global describe), by label."""
        try:
            # simple-salesforce's describe() is the global describe: GET /sobjects/.
            # A lambda: after a re-login, client.sf is a new connection.
            listing = self.client.call("list objects", lambda: self.client.sf.describe()) or {}  # noqa: PLW0108
        except SalesforceClientError as exc:
            raise OrgError(str(exc)) from exc
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

    def verify(self, document: Any, previous: MappingConfig | None = None) -> Verification:
        """``verify`` for a mapping that is not saved yet, on this editor's session.

        ``previous`` (the saved mapping) adds what the change does to the groups already in Amplitude.
        """
        config = {k: v for k, v in self.settings.items() if k not in ("mapping", "mapping_file")}
        config["mapping"] = document
        with self._lock:
            return verify(config, self.client, previous=previous)


def run_verification(settings: Mapping[str, Any], client: SalesforceClient | None = None) -> Verification:
    """What ``verify`` checks (:func:`tap_salesforce_groups.core.verify`), with the defaults filled in."""
    return verify(resolve(settings), client)


def field_choices(object_name: str, describe: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    """Every field path the tap can read for ``object_name``, each with its default property name.

    Direct fields first, then one hop through each lookup (``Owner.Name``); a polymorphic lookup
    offers the Name object's fields. Only what the tap's verification accepts is offered. Group
    name warnings are the tap's own (:func:`group_name_warnings`), mapping label left off.
    """
    own = describe(object_name)["fields"]
    paths: list[str] = [f["name"] for f in own if json_type(f) is not None]
    for ref in own:
        relationship = ref.get("relationshipName")
        targets = ref.get("referenceTo") or []
        if not relationship or not targets:
            continue
        if _is_polymorphic(ref):
            # SOQL reads a polymorphic hop (Owner on Case) through the Name object's fields only.
            # https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_name.htm
            paths += [f"{relationship}.{name}" for name in NAME_OBJECT_FIELDS]
            continue
        try:
            target = describe(targets[0])["fields"]
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
