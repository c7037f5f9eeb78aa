"""`make docs`: the settings of both plugins, declared once in code, written everywhere else.

Each plugin's ``config_jsonschema`` is the source. From ``<plugin> --about --format=json`` this
writes the ``settings:`` lists of meltano.yml and all of .env.example; from ``--about
--format=markdown`` the settings tables of README.md. ``--check`` writes nothing and exits 1
naming each file that is out of date (tests/ops/test_settings.py runs it).

A setting that meltano.yml's own ``config:`` of the plugin sets to something else than its
default (the target's ``validate_records: false``) is what ``meltano config list`` shows as its
current value: the README table's Default column says both, and .env.example says so above its line.

A ``meltano.yml`` that Meltano rewrote (``meltano config set`` without ``--store=dotenv``
drops every comment, the markers too) still works: each plugin's ``settings:`` list is found by
its YAML structure, replaced, and the markers are put back; ``--check`` compares meltano.yml's
settings as YAML, so quoting Meltano chose is not a difference.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PLUGINS = ("tap-salesforce-groups", "target-amplitude-groups")
# The SDK's built-in settings that this project declares in meltano.yml (the others, such as
# stream_maps, work too but are left to the SDK's documentation).
DECLARED_BUILTINS = {"target-amplitude-groups": ("batch_size_rows", "validate_records")}
SDK_BUILTINS = {
    "stream_maps",
    "stream_map_config",
    "faker_config",
    "flattening_enabled",
    "flattening_max_depth",
    "flattening_max_key_length",
    "flattening_separator",
    "batch_config",
    "add_record_metadata",
    "load_method",
    "batch_size_rows",
    "validate_records",
}
ENV_HEADERS = {
    "tap-salesforce-groups": "tap-salesforce-groups: set one of the four credential sets "
    '(README, "Connect your org")',
    "target-amplitude-groups": "target-amplitude-groups",
}


def about(plugin: str, fmt: str) -> str:
    """The plugin's ``--about`` output in ``fmt`` (json or markdown)."""
    return subprocess.run(
        [str(BIN / plugin), "--about", f"--format={fmt}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout


def declared(plugin: str, properties: dict[str, Any]) -> list[str]:
    """The settings meltano.yml declares: the plugin's own, plus the chosen SDK built-ins."""
    extra = DECLARED_BUILTINS.get(plugin, ())
    return [name for name in properties if name not in SDK_BUILTINS or name in extra]


def meltano_kind(prop: dict[str, Any]) -> str | None:
    """The Meltano setting ``kind`` for a JSON Schema property (None: the default, string)."""
    types = [t for t in prop.get("type", []) if t != "null"]
    if prop.get("enum"):
        return "options"
    if "string" in types and prop.get("format") == "date-time":
        return "date_iso8601"
    return {"integer": "integer", "number": "decimal", "boolean": "boolean", "object": "object"}.get(
        types[0] if types else "string"
    )


def env_value(value: Any) -> str:
    """A default as it is written in .env (empty when there is none)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _yaml_scalar(value: Any) -> str:
    # JSON strings are YAML double-quoted scalars, so descriptions need no escaping rules of their own.
    return json.dumps(value, ensure_ascii=False)


def meltano_settings(plugin: str, properties: dict[str, Any]) -> list[str]:
    """One flow-style YAML line per declared setting."""
    lines = []
    for name in declared(plugin, properties):
        prop = properties[name]
        parts = [f"name: {name}"]
        kind = meltano_kind(prop)
        if kind:
            parts.append(f"kind: {kind}")
        if prop.get("default") is not None:
            parts.append(f"value: {_yaml_scalar(prop['default'])}")
        if prop.get("enum"):
            options = ", ".join(
                f"{{label: {_yaml_scalar(v)}, value: {_yaml_scalar(v)}}}" for v in prop["enum"]
            )
            parts.append(f"options: [{options}]")
        if prop.get("secret"):
            parts.append("sensitive: true")
        if prop.get("description"):
            parts.append(f"description: {_yaml_scalar(prop['description'])}")
        lines.append("    - {" + ", ".join(parts) + "}")
    return lines


class MarkersMissing(SystemExit):
    """The generated block's begin/end marker lines are not in the file."""


def replace_block(text: str, begin: str, end: str, body: str) -> str:
    """``text`` with everything between the lines containing ``begin`` and ``end`` replaced."""
    pattern = re.compile(rf"(^[^\n]*{re.escape(begin)}[^\n]*\n).*?(^[^\n]*{re.escape(end)})", re.M | re.S)
    if not pattern.search(text):
        msg = f"markers {begin!r} … {end!r} not found"
        raise MarkersMissing(msg)
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text, count=1)


MARKER_NOTE = "(generated by `make docs` from --about; edit the plugin's config_jsonschema)"


def _settings_key(lines: list[str], entry: int) -> int | None:
    """The line of the ``settings:`` key of the plugin entry starting at ``entry``, if it has one."""
    entry_indent = len(lines[entry]) - len(lines[entry].lstrip())
    for i in range(entry + 1, len(lines)):
        stripped = lines[i].lstrip()
        indent = len(lines[i]) - len(stripped)
        if stripped.strip() and indent <= entry_indent:
            return None  # the next entry, or the end of the list
        if stripped.startswith("settings:") and indent == entry_indent + 2:
            return i
    return None


def replace_settings(meltano_yml: str, plugin: str, body: str) -> str:
    """meltano.yml with ``plugin``'s ``settings:`` list replaced by ``body`` (between markers).

    With the markers gone (Meltano rewrote the file), the list is found by structure: the
    ``- name: <plugin>`` entry, its ``settings:`` key, and the items indented under it.
    """
    try:
        return replace_block(meltano_yml, f"# settings:{plugin}", f"# /settings:{plugin}", body)
    except MarkersMissing:
        pass
    lines = meltano_yml.splitlines(keepends=True)
    entries = [i for i, line in enumerate(lines) if re.fullmatch(rf"\s*- name: {re.escape(plugin)}\s*", line)]
    found = next(((i, k) for i in entries if (k := _settings_key(lines, i)) is not None), None)
    if found is None:  # e.g. only an environment's entry for the plugin
        raise SystemExit(f"meltano.yml: plugin {plugin!r} has no settings list")
    entry, key = found
    entry_indent = len(lines[entry]) - len(lines[entry].lstrip())
    indent = " " * (entry_indent + 2)
    end = key + 1
    while end < len(lines) and (
        not lines[end].strip()
        or len(lines[end]) - len(lines[end].lstrip()) > len(indent)
        or lines[end].startswith(indent + "- ")
    ):
        end += 1
    block = f"{indent}# settings:{plugin} {MARKER_NOTE}\n{body}{indent}# /settings:{plugin}\n"
    return "".join([*lines[: key + 1], block, *lines[end:]])


def project_values(meltano_yml: str, plugin: str, properties: dict[str, Any]) -> dict[str, Any]:
    """The declared settings that the plugin's ``config:`` in meltano.yml sets off their default.

    Only the plugin's own entry counts (not an environment's, nor an inheriting plugin's): what
    ``meltano config list <plugin>`` shows as the current value when nothing else sets it.
    """
    project = yaml.safe_load(meltano_yml) or {}
    entries = [
        p for kind in ("extractors", "loaders") for p in (project.get("plugins") or {}).get(kind) or []
    ]
    config = next((p.get("config") or {} for p in entries if p.get("name") == plugin), {})
    return {
        name: value
        for name, value in config.items()
        if name in declared(plugin, properties) and value != properties[name].get("default")
    }


def _shown(value: Any) -> str:
    """A value as --about's markdown shows one (Python's spelling: True, None)."""
    return "(an object)" if isinstance(value, (dict, list)) else str(value)


def settings_table(markdown: str, names: list[str], project: dict[str, Any] | None = None) -> str:
    """The ``## Settings`` table of the about markdown, limited to the declared settings.

    A setting in ``project`` (set in meltano.yml) shows that value first, then the plugin's default.
    """
    section = markdown.split("## Settings", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header, body = rows[:2], rows[2:]
    keep = []
    for row in body:
        cells = row.split("|", 4)  # "", name, required, default, "description |"
        name = cells[1].strip()
        if name not in names:
            continue
        if project and name in project:
            cells[3] = f" {_shown(project[name])} in meltano.yml (plugin default: {cells[3].strip()}) "
        keep.append("|".join(cells))
    return "\n".join([*header, *keep]) + "\n"


def env_example(abouts: dict[str, dict[str, Any]], meltano_yml: str) -> str:
    """.env.example: every declared setting, commented out, with its default as the value."""
    out = [
        "# Copy to .env (git-ignored; Meltano reads it). Every line is commented out, so the copy",
        "# changes nothing: uncomment a line and fill it in to set that setting. A value shown is",
        "# the default. Generated by `make docs` from each plugin's --about; edit the plugin, not this.",
    ]
    for plugin, data in abouts.items():
        prefix = plugin.upper().replace("-", "_")
        out += ["", f"# --- {ENV_HEADERS[plugin]} ---"]
        properties = data["settings"]["properties"]
        project = project_values(meltano_yml, plugin, properties)
        for name in declared(plugin, properties):
            if name in project:
                out.append(
                    f"# (meltano.yml sets {name}: {env_value(project[name])}; the plugin's default below)"
                )
            out.append(f"# {prefix}_{name.upper()}={env_value(properties[name].get('default'))}")
    out += [
        "",
        "# --- state backend (docs/operations.md, State backends; default: .meltano/meltano.db) ---",
        "# MELTANO_STATE_BACKEND_URI=s3://my-bucket/meltano-state",
        "# MELTANO_DATABASE_URI=postgresql+psycopg://user:password@host:5432/meltano",
    ]
    return "\n".join(out) + "\n"


def generate(root: Path = ROOT) -> dict[Path, str]:
    """The new text of every generated file."""
    abouts = {p: json.loads(about(p, "json")) for p in PLUGINS}
    readme = (root / "README.md").read_text(encoding="utf-8")
    meltano_yml = (root / "meltano.yml").read_text(encoding="utf-8")
    for plugin, data in abouts.items():
        properties = data["settings"]["properties"]
        names = declared(plugin, properties)
        readme = replace_block(
            readme,
            f"<!-- settings:{plugin} -->",
            f"<!-- /settings:{plugin} -->",
            settings_table(about(plugin, "markdown"), names, project_values(meltano_yml, plugin, properties)),
        )
        meltano_yml = replace_settings(
            meltano_yml, plugin, "\n".join(meltano_settings(plugin, properties)) + "\n"
        )
    return {
        root / "README.md": readme,
        root / "meltano.yml": meltano_yml,
        root / ".env.example": env_example(abouts, meltano_yml),
    }


def same(path: Path, old: str, new: str) -> bool:
    """Whether ``old`` is already ``new``; meltano.yml's settings compare as YAML, not as text."""
    if old == new:
        return True
    if path.name != "meltano.yml":
        return False

    def settings(text: str) -> Any:
        project = yaml.safe_load(text)
        return {
            p["name"]: p.get("settings")
            for kind in ("extractors", "loaders")
            for p in project.get("plugins", {}).get(kind, [])
            if p["name"] in PLUGINS
        }

    return bool(settings(old) == settings(new))


def main(argv: list[str] | None = None) -> int:
    """Write the generated files, or with --check report the stale ones."""
    parser = argparse.ArgumentParser(prog="python docs/settings.py", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is stale")
    parser.add_argument("--project", type=Path, default=ROOT, help="the project folder (default: this one)")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generate(args.project).items():
        old = path.read_text(encoding="utf-8")
        if args.check and same(path, old, text):
            continue
        if old != text:
            stale.append(path.name)
            if not args.check:
                path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print(f"out of date, run `make docs`: {', '.join(stale)}", file=sys.stderr)
        return 1
    print(
        f"{'updated' if stale else 'up to date'}: {', '.join(stale) or 'README.md, meltano.yml, .env.example'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
