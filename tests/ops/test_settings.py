"""Settings are declared once, in each plugin's config_jsonschema.

Meltano.yml, .env.example and README's tables must agree with what ``<plugin> --about --format=json`` says.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emulators.pipeline import PROJECT_ROOT

BIN = Path(sys.executable).parent
PLUGINS = {"extractors": "tap-salesforce-groups", "loaders": "target-amplitude-groups"}
# Written out rather than imported from docs/settings.py, so a mistake there cannot hide here.
KINDS = {"integer": "integer", "number": "decimal", "boolean": "boolean", "object": "object"}
SDK_SETTINGS_DECLARED = {"target-amplitude-groups": {"batch_size_rows", "validate_records"}}
SDK_SETTINGS = {
    "stream_maps", "stream_map_config", "faker_config", "flattening_enabled", "flattening_max_depth",
    "flattening_max_key_length", "flattening_separator", "batch_config", "add_record_metadata",
    "load_method", "batch_size_rows", "validate_records",
}  # fmt: skip


def about(plugin: str) -> dict:
    out = subprocess.run([str(BIN / plugin), "--about", "--format=json"], capture_output=True, check=True)
    return json.loads(out.stdout)["settings"]["properties"]


def own_settings(plugin: str) -> dict:
    props = about(plugin)
    keep = SDK_SETTINGS_DECLARED.get(plugin, set())
    return {k: v for k, v in props.items() if k not in SDK_SETTINGS or k in keep}


def expected_kind(prop: dict) -> str | None:
    types = [t for t in prop["type"] if t != "null"]
    if prop.get("enum"):
        return "options"
    if prop.get("format") == "date-time":
        return "date_iso8601"
    return KINDS.get(types[0])


@pytest.mark.parametrize(("plugin_type", "plugin"), PLUGINS.items())
def test_meltano_yml_agrees_with_about(plugin_type, plugin):
    project = yaml.safe_load((PROJECT_ROOT / "meltano.yml").read_text())
    entry = next(p for p in project["plugins"][plugin_type] if p["name"] == plugin)
    declared = {s["name"]: s for s in entry["settings"]}
    props = own_settings(plugin)
    assert list(declared) == list(props)
    for name, prop in props.items():
        setting = declared[name]
        assert setting.get("kind") == expected_kind(prop), name
        assert setting.get("value") == prop.get("default"), name
        assert bool(setting.get("sensitive")) == bool(prop.get("secret")), name
        if prop.get("enum"):
            assert [o["value"] for o in setting["options"]] == prop["enum"], name


def test_env_example_lists_every_setting_commented_out_with_its_default():
    lines = (PROJECT_ROOT / ".env.example").read_text().splitlines()
    assert all(not line or line.startswith("#") for line in lines), "every line must be commented out"
    entries = dict(re.findall(r"^# ([A-Z][A-Z0-9_]+)=(.*)$", "\n".join(lines), re.M))
    for plugin in PLUGINS.values():
        prefix = plugin.upper().replace("-", "_") + "_"
        for name, prop in own_settings(plugin).items():
            default = prop.get("default")
            text = (
                "" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
            )
            assert entries.pop(prefix + name.upper()) == text, name
    assert set(entries) == {"MELTANO_STATE_BACKEND_URI", "MELTANO_DATABASE_URI"}


@pytest.mark.parametrize(("plugin_type", "plugin"), PLUGINS.items())
def test_readme_defaults_are_what_meltano_config_list_shows(plugin_type, plugin):
    """A setting that meltano.yml's config sets off its default shows that value, then the plugin's.

    `meltano config list` shows it so: `(default: True) current value: False (from meltano.yml)`.
    """
    project = yaml.safe_load((PROJECT_ROOT / "meltano.yml").read_text())
    entry = next(p for p in project["plugins"][plugin_type] if p["name"] == plugin)
    config = entry.get("config") or {}
    readme = (PROJECT_ROOT / "README.md").read_text()
    table = readme.split(f"<!-- settings:{plugin} -->", 1)[1].split(f"<!-- /settings:{plugin} -->", 1)[0]
    cells = {row.split("|")[1].strip(): row.split("|")[3].strip() for row in table.splitlines()[3:]}
    for name, prop in own_settings(plugin).items():
        default = str(prop.get("default"))
        if name in config and config[name] != prop.get("default"):
            assert cells[name] == f"{config[name]} in meltano.yml (plugin default: {default})", name
        else:
            assert cells[name] == default, name
    if plugin == "target-amplitude-groups":  # the case this is for
        assert cells["validate_records"] == "False in meltano.yml (plugin default: True)"


def test_generated_settings_are_current():
    """README's tables, meltano.yml's settings and .env.example are what `make docs` writes."""
    result = subprocess.run(
        [sys.executable, "docs/settings.py", "--check"],
        check=False,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_make_docs_survives_a_meltano_yml_that_meltano_rewrote(tmp_path):
    """`make docs` and its check still work after `meltano config set` rewrote meltano.yml.

    A non-secret setting set without --store=dotenv rewrites meltano.yml, every comment gone
    (the settings markers too).
    """
    import shutil

    for name in ("README.md", "meltano.yml", ".env.example"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_", "TARGET_", "MELTANO_"))}
    env |= {
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path}/m.db",
    }
    subprocess.run(
        [str(BIN / "meltano"), "config", "set", "tap-salesforce-groups", "domain", "test"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    rewritten = (tmp_path / "meltano.yml").read_text()
    assert "# settings:tap-salesforce-groups" not in rewritten  # Meltano dropped the markers

    def docs(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(PROJECT_ROOT / "docs" / "settings.py"), "--project", str(tmp_path), *args],
            capture_output=True,
            text=True,
            check=False,
        )

    check = docs("--check")
    # meltano.yml's settings are current, however Meltano quoted them; README's table and
    # .env.example are not, since they say what meltano.yml now sets (domain: test).
    assert check.returncode == 1 and check.stderr.strip().endswith(": README.md, .env.example"), check.stderr
    assert docs().returncode == 0
    assert (
        "| domain | False | test in meltano.yml (plugin default: login) |"
        in (tmp_path / "README.md").read_text()
    )
    regenerated = (tmp_path / "meltano.yml").read_text()
    assert (
        "# settings:tap-salesforce-groups" in regenerated
        and "# /settings:target-amplitude-groups" in regenerated
    )
    project = yaml.safe_load(regenerated)
    tap = next(p for p in project["plugins"]["extractors"] if p["name"] == "tap-salesforce-groups")
    assert tap["config"] == {"domain": "test"}  # what the user set is kept
    assert [s["name"] for s in tap["settings"]] == list(own_settings("tap-salesforce-groups"))
    assert docs("--check").returncode == 0
