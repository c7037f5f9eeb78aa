"""``tap-salesforce-groups-mapping``: validate, export, scaffold, verify and edit mappings.

Settings come from ``--config FILE`` or, as under ``meltano invoke``, from the
``TAP_SALESFORCE_GROUPS_*`` environment variables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from singer_sdk.exceptions import ConfigValidationError

from groups_mapping import MappingConfig, MappingError, load_mapping, parse_mapping, write_atomically
from tap_salesforce_groups import core
from tap_salesforce_groups import settings as tap_settings
from tap_salesforce_groups.connect import ENV_NAME, TIMEOUT_S, ConnectError, default_env_file, run_connect
from tap_salesforce_groups.editor import run_editor
from tap_salesforce_groups.editor.org import property_label
from tap_salesforce_groups.errors import SalesforceClientError
from tap_salesforce_groups.interrupt import interruptible, signals_deferred
from tap_salesforce_groups.project import pairing_problems, project_problems
from tap_salesforce_groups.schema import UNSUPPORTED_TYPES, FieldProblem, json_type

# Bookkeeping fields the tap reads anyway; a scaffold with --all leaves them out.
SYSTEM_FIELDS = {
    "Id",
    "IsDeleted",
    "SystemModstamp",
    "LastModifiedDate",
    "LastModifiedById",
    "CreatedById",
    "LastViewedDate",
    "LastReferencedDate",
}


def _settings(config: tuple[str, ...]) -> dict[str, Any]:
    """Settings from the config files, else from the environment (as the SDK reads them)."""
    merged: dict[str, Any] = {}
    for path in config:
        try:
            merged.update(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            _fail([f"{path}: {exc}"], "Cannot read the settings:")
    try:
        return tap_settings.resolve(merged, environment=not config)
    except ValueError as exc:  # e.g. an empty TAP_SALESFORCE_GROUPS_MAPPING= in .env
        _fail([str(exc)], "Cannot read the settings:")


def _fail(problems: list[str], header: str) -> NoReturn:
    click.echo(header, err=True)
    for problem in problems:
        click.echo(f"  - {problem}", err=True)
    sys.exit(1)


def _load(settings: dict[str, Any]) -> Any:
    try:
        return load_mapping(settings.get("mapping"), settings.get("mapping_file"))
    except MappingError as exc:
        click.echo(exc.report(), err=True)
        sys.exit(1)
    return None  # pragma: no cover


config_option = click.option(
    "--config",
    "config",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Tap config JSON file(s); default: TAP_SALESFORCE_GROUPS_* environment variables.",
)


@click.group()
def main() -> None:
    """Validate, export, scaffold, verify and edit tap-salesforce-groups mappings."""


@main.command()
@config_option
@interruptible()
def validate(config: tuple[str, ...]) -> None:
    """Check the mapping offline: every problem, one line each; exit 1 when there is any."""
    settings = _settings(config)
    mapping = _load(settings)
    if problems := _check_project(mapping, settings):
        _fail(problems, PROJECT_HEADER.format(len(problems)))
    fields = sum(len(m.properties) for m in mapping.mappings)
    with signals_deferred():
        click.echo(f"Mapping OK: {len(mapping.mappings)} mappings, {fields} group properties.")


PROJECT_HEADER = "The project's mappings do not work together ({} problems):"


def _check_project(mapping: MappingConfig, settings: dict[str, Any], *, pairing: bool = False) -> list[str]:
    """The problems of the mapping together with every other mapping the Meltano project uses.

    With ``pairing``, also each job's tap and target reading the same one. Warnings are echoed.
    """
    source = str(settings.get("mapping_file") or "mapping setting")
    problems, warnings = project_problems(mapping, source)
    if pairing:
        problems += pairing_problems()
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    return problems


@main.command()
@config_option
@interruptible()
def export(config: tuple[str, ...]) -> None:
    """Print the normalised mapping (the file format) to stdout."""
    mapping = _load(_settings(config))
    text = json.dumps(mapping.to_dict(), indent=2, ensure_ascii=False)
    with signals_deferred():  # all of it or nothing, even into a file
        click.echo(text)


def _expand_compound(object_name: str, paths: list[str], describe: Any) -> list[str]:
    """A compound field (BillingAddress) stands for its components (BillingStreet, …)."""
    fields = describe(object_name)["fields"]
    expanded = []
    for path in paths:
        parts = [f["name"] for f in fields if (f.get("compoundFieldName") or "").lower() == path.lower()]
        expanded += parts or [path]
    return expanded


def _absent_or_empty(path: str | None) -> bool:
    """True when there is no mapping file yet to add to: unset, missing, or only whitespace."""
    if not path:
        return True
    try:
        return not Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return True
    except OSError:
        return False  # unreadable: let the loader report it


@main.command()
@config_option
@click.option("--object", "object_name", required=True, help="Salesforce object API name, e.g. Account.")
@click.option("--group-type", required=True, help="Amplitude group type, e.g. 'org id'.")
@click.option("--name-field", default="Id", show_default=True, help="Group name field.")
@click.option("--fields", default="", help="Comma-separated fields or relationship paths to import.")
@click.option("--all", "all_fields", is_flag=True, help="Every importable field of the object.")
@click.option("--write", is_flag=True, help="Add the new mapping to mapping_file instead of printing it.")
@interruptible()
def scaffold(  # noqa: PLR0917 (click passes options positionally)
    config: tuple[str, ...],
    object_name: str,
    group_type: str,
    name_field: str,
    fields: str,
    all_fields: bool,
    write: bool,
) -> None:
    """Build a mapping entry from the org's describe; property names default to field labels."""
    settings = _settings(config)
    try:
        describe = core.connect(settings).describe
        chosen = _expand_compound(object_name, [f.strip() for f in fields.split(",") if f.strip()], describe)
        if all_fields:
            chosen += [
                f["name"]
                for f in describe(object_name)["fields"]
                if f["name"] not in SYSTEM_FIELDS
                and f["type"] not in UNSUPPORTED_TYPES
                and json_type(f) is not None
                and f["name"] != name_field
            ]
        problems = []
        properties = []
        for path in [name_field, *dict.fromkeys(chosen)]:
            try:
                label = property_label(object_name, path, describe)
            except FieldProblem as exc:
                problems.append(str(exc))
                continue
            if path != name_field:
                properties.append({"field": path, "property": label})
    except ConfigValidationError as exc:
        _fail(list(exc.errors), "Cannot read the settings:")
    except SalesforceClientError as exc:
        _fail([str(exc)], "Cannot read the org:")
    if problems:
        _fail(problems, f"Cannot scaffold {object_name}:")
    entry = {
        "object": object_name,
        "group_type": group_type,
        "group_name_field": name_field,
        "properties": properties,
    }
    existing = None
    if settings.get("mapping") is not None or not _absent_or_empty(settings.get("mapping_file")):
        existing = _load(settings).to_dict()
    document = existing or {"version": 1, "mappings": []}
    document["mappings"].append(entry)
    try:
        parse_mapping(document)  # the combined mapping must still be valid (e.g. no clashes)
    except MappingError as exc:
        _fail(exc.problems, "The scaffolded mapping would be invalid:")
    text = json.dumps(document, indent=2, ensure_ascii=False)
    if write:
        mapping_file = str(settings.get("mapping_file") or "")
        if not mapping_file:
            _fail(["--write needs the mapping_file setting"], "Nowhere to write:")
        with signals_deferred():
            write_atomically(mapping_file, text + "\n")
        click.echo(
            f"Added '{object_name} -> {group_type}' ({len(properties)} properties) to {mapping_file}",
            err=True,
        )
    else:
        with signals_deferred():  # all of it or nothing, even into a file
            click.echo(text)


@main.command()
@config_option
@interruptible()
def verify(config: tuple[str, ...]) -> None:
    """Check the mapping against the org, then read one row per object (the tap's --test)."""
    settings = _settings(config)
    project = _check_project(_load(settings), settings, pairing=True)
    result = core.verify(settings, previous=core.previous_mapping(settings))
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if project:  # listed with the org's problems: every problem at once
        click.echo(PROJECT_HEADER.format(len(project)), err=True)
        for problem in project:
            click.echo(f"  - {problem}", err=True)
    if result.problems:
        _fail(result.problems, result.header)
    if project:
        sys.exit(1)
    click.echo(result.summary)


@main.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port."
)
@click.option("--no-browser", is_flag=True, help="Print the URL only; do not open a browser.")
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where Connect to Salesforce stores the refresh token [default: the project's .env].",
)
@interruptible("Mapping editor stopped by {signal}.")
def editor(config: tuple[str, ...], host: str, port: int, no_browser: bool, env_file: Path | None) -> None:
    """Serve the mapping editor page against the org; stop with Ctrl-C."""
    sys.exit(run_editor(_settings(config), host, port, open_browser=not no_browser, env_file=env_file))


@main.command()
@config_option
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of the local callback.",
)
@click.option("--no-browser", is_flag=True, help="Print the login URL only; do not open a browser.")
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to store the refresh token [default: the project's .env].",
)
@click.option(
    "--timeout",
    default=TIMEOUT_S,
    show_default=True,
    type=click.IntRange(1),
    help="Seconds to wait for the login.",
)
@interruptible("connect: stopped by {signal}")
def connect(
    config: tuple[str, ...], port: int, no_browser: bool, env_file: Path | None, timeout: int
) -> None:
    """Log in to Salesforce in the browser (OAuth with PKCE) and store the refresh token.

    Register http://localhost:PORT/oauth/callback as a Callback URL of the connected app first.
    """
    settings = _settings(config)
    target = env_file or default_env_file()
    try:
        connection = run_connect(
            settings,
            port=port,
            env_file=target,
            open_browser=not no_browser,
            timeout=timeout,
            echo=lambda line: click.echo(line, err=True),
        )
    except ConnectError as exc:
        click.echo(f"Cannot connect to Salesforce: {exc}", err=True)
        sys.exit(1)
    with signals_deferred():
        click.echo(connection.line)
        click.echo(f"Stored {ENV_NAME} in {target} (mode 0600).", err=True)


if __name__ == "__main__":
    main()
