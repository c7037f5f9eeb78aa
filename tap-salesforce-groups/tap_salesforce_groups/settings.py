"""The tap's settings: one schema, its defaults, the environment, and what the schema cannot check.

Plain functions with no side effects: the tap, the mapping command line and the editor all read
settings through them, so none of them needs to build a ``Tap`` (which installs signal handlers
and claims stdout).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from singer_sdk import typing as th

from groups_mapping import MAPPING_DESCRIPTION, MAPPING_FILE_DESCRIPTION, insecure_url
from tap_salesforce_groups.auth import auth_flow, jwt_assertion
from tap_salesforce_groups.errors import SalesforceAuthError
from tap_salesforce_groups.timestamps import parse_datetime
from tap_salesforce_groups.token_store import DEFAULT_REFRESH_TOKEN_FILE

# The prefix of the settings' environment variables, as the SDK and Meltano name them.
ENV_PREFIX = "TAP_SALESFORCE_GROUPS_"
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
        "(read from Sforce-Limit-Info), exit 75; the objects not read are read first next time.",
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
    (
        "lookback_seconds",
        th.IntegerType(minimum=0),
        600,
        "Each incremental read starts this many seconds before the bookmark, for rows that "
        "commit late with an older SystemModstamp; rows already sent are not sent again.",
    ),
    (
        "formula_refresh_hours",
        th.IntegerType(minimum=1),
        24,
        "Formula and roll-up fields change without a timestamp: objects that map any are read "
        "again in full this often (hours).",
    ),
)


CONFIG_JSONSCHEMA: dict[str, Any] = th.PropertiesList(
    th.Property("client_id", th.StringType, description="Connected app consumer key."),
    th.Property("client_secret", th.StringType, secret=True, description="Connected app consumer secret."),
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
    th.Property("username", th.StringType, description="Salesforce username (JWT bearer or legacy login)."),
    th.Property("password", th.StringType, secret=True, description="Password (legacy login)."),
    th.Property("security_token", th.StringType, secret=True, description="Security token (legacy login)."),
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
        description="JWT bearer audience override (default: https://test.salesforce.com when domain "
        "or login_url names a sandbox: test, *.sandbox.my.salesforce.com or a scratch org "
        "*.scratch.my.salesforce.com; else https://login.salesforce.com).",
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


def defaults() -> dict[str, Any]:
    """Each setting's default, as declared in :data:`CONFIG_JSONSCHEMA`."""
    return {
        name: prop["default"] for name, prop in CONFIG_JSONSCHEMA["properties"].items() if "default" in prop
    }


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``TAP_SALESFORCE_GROUPS_*`` variables, typed by the schema as the SDK types them.

    Raises:
        ValueError: a value that does not parse (e.g. an empty ``…_MAPPING=``), naming the variable.
    """
    environ = os.environ if environ is None else environ
    settings: dict[str, Any] = {}
    for name, prop in CONFIG_JSONSCHEMA["properties"].items():
        variable = ENV_PREFIX + name.upper()
        if variable not in environ:
            continue
        text = environ[variable]
        kinds = prop.get("type") or []
        kinds = [kinds] if isinstance(kinds, str) else kinds
        try:
            if "integer" in kinds:
                settings[name] = int(text)
            elif "boolean" in kinds:
                settings[name] = text.lower() in {"true", "1", "yes", "on"}  # the SDK's TRUTHY
            elif "object" in kinds or "array" in kinds:
                settings[name] = json.loads(text)
            else:
                settings[name] = text
        except ValueError as exc:
            raise ValueError(f"{variable}: {exc}") from exc
    return settings


def resolve(config: Mapping[str, Any] | None = None, *, environment: bool = False) -> dict[str, Any]:
    """The settings a run uses: defaults, then ``config``, then (when asked) the environment."""
    settings = defaults()
    settings.update(config or {})
    if environment:
        settings.update(from_environment())
    return settings


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
