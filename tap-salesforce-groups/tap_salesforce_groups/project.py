"""The Meltano project around a command: every mapping its plugins use, checked together.

A rule checked per file is not checked once a project splits its mapping: shards with a
mapping file each, inherited plugins, environments. ``validate``, ``verify`` and the editor
therefore check the mapping they were given together with every other mapping one Amplitude
project receives from this Meltano project: the ``mapping_file`` or ``mapping`` of each plugin
of the tap's and the target's family (inherited plugins and ``include_paths`` files included),
as the active environment sets them. Meltano sets ``MELTANO_PROJECT_ROOT`` and
``MELTANO_ENVIRONMENT`` for the plugins it runs; outside Meltano the working directory's
``meltano.yml`` is read, in its default environment.

Other code that combines mappings (the shards of a scale-out) calls :func:`problems_together`
of ``groups_mapping`` with the parsed mappings, or :func:`project_problems` with a project root.
"""

from __future__ import annotations

import glob
import itertools
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from groups_mapping import MappingConfig, MappingError, load_mapping, parse_mapping, problems_together

PROJECT_ROOT_ENV = "MELTANO_PROJECT_ROOT"
ENVIRONMENT_ENV = "MELTANO_ENVIRONMENT"
TAP = "tap-salesforce-groups"
TARGET = "target-amplitude-groups"
# How a plugin is recognised as ours, besides inheriting from one that is.
_FAMILY = {
    "extractors": ({TAP, "tap-salesforce-groups-mapping"}, "tap_salesforce_groups"),
    "loaders": ({TARGET}, "target_amplitude_groups"),
}


class ProjectError(Exception):
    """``meltano.yml`` (or a file it includes) cannot be read."""


@dataclass(frozen=True)
class PluginMapping:
    """Where one plugin's mapping comes from, in one environment."""

    kind: str  # extractors | loaders
    plugin: str
    mapping: Any  # the inline `mapping` setting, or None
    mapping_file: str | None  # relative to the project root

    @property
    def name(self) -> str:
        """How problems name it: ``target-amplitude-groups-plans (mappings/plans.json)``."""
        return f"{self.plugin} ({self.mapping_file or 'mapping setting'})"

    def load(self, root: Path) -> MappingConfig:
        """The parsed mapping (the target accepts any tap's names, the tap only Salesforce's)."""
        path = str(root / self.mapping_file) if self.mapping_file else None
        return load_mapping(self.mapping, path, strict_names=self.kind == "extractors")


def project_root() -> Path | None:
    """The Meltano project this command runs in, if any."""
    if root := os.environ.get(PROJECT_ROOT_ENV):
        return Path(root)
    cwd = Path.cwd()
    return cwd if (cwd / "meltano.yml").is_file() else None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, YAMLError) as exc:
        raise ProjectError(f"cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}


def read_project(root: Path) -> dict[str, Any]:
    """``meltano.yml`` with the plugins, environments and jobs of its ``include_paths`` files."""
    project = _read_yaml(root / "meltano.yml")
    plugins = {kind: list((project.get("plugins") or {}).get(kind) or []) for kind in _FAMILY}
    environments = list(project.get("environments") or [])
    jobs = list(project.get("jobs") or [])
    for pattern in project.get("include_paths") or []:
        for name in sorted(glob.glob(str(root / pattern), recursive=True)):
            extra = _read_yaml(Path(name))
            for kind in _FAMILY:
                plugins[kind] += (extra.get("plugins") or {}).get(kind) or []
            environments += extra.get("environments") or []
            jobs += extra.get("jobs") or []
    return {**project, "plugins": plugins, "environments": environments, "jobs": jobs}


def active_environment(project: Mapping[str, Any]) -> str | None:
    """The environment Meltano runs in: ``MELTANO_ENVIRONMENT``, else the project's default."""
    return os.environ.get(ENVIRONMENT_ENV) or project.get("default_environment")


def _chain(plugins: dict[str, dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The plugin and the plugins it inherits from, nearest first."""
    chain: list[dict[str, Any]] = []
    while name in plugins and all(p is not plugins[name] for p in chain):
        chain.append(plugins[name])
        name = str(plugins[name].get("inherit_from") or "")
    return chain


def _ours(kind: str, chain: list[dict[str, Any]]) -> bool:
    names, namespace = _FAMILY[kind]
    return any(p.get("name") in names or p.get("namespace") == namespace for p in chain) or any(
        str(p.get("inherit_from") or "") in names for p in chain
    )


def _env_config(project: Mapping[str, Any], environment: str | None, kind: str) -> dict[str, dict[str, Any]]:
    for env in project.get("environments") or []:
        if isinstance(env, dict) and env.get("name") == environment:
            entries = ((env.get("config") or {}).get("plugins") or {}).get(kind) or []
            return {str(p.get("name")): p.get("config") or {} for p in entries if isinstance(p, dict)}
    return {}


def _dotenv(root: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of the project's ``.env`` (what Meltano reads for settings)."""
    values: dict[str, str] = {}
    try:
        lines = (root / ".env").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return values
    for line in lines:
        key, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and key and not key.startswith("#"):
            values[key.strip()] = value.strip().strip("'\"")
    return values


def plugin_mappings(root: Path, environment: str | None = None) -> Iterator[PluginMapping]:
    """Where each of the project's tap and target plugins takes its mapping from.

    Meltano's order: the plugin's environment variable (``<PLUGIN>_MAPPING_FILE``), the
    project's ``.env``, then ``meltano.yml``: the environment's config, the plugin's own, then
    what it inherits (nearest first). Plugins with no mapping are left out.
    """
    project = read_project(root)
    environment = environment or active_environment(project)
    dotenv = _dotenv(root)
    for kind in _FAMILY:
        plugins = {str(p.get("name")): p for p in project["plugins"][kind] if isinstance(p, dict)}
        env_config = _env_config(project, environment, kind)
        for name in plugins:
            chain = _chain(plugins, name)
            if not _ours(kind, chain):
                continue
            layers = [env_config.get(str(p.get("name")), {}) for p in chain]
            layers = [
                x for pair in zip(layers, [p.get("config") or {} for p in chain], strict=False) for x in pair
            ]
            prefix = name.upper().replace("-", "_")
            values: dict[str, Any] = {}
            for key in ("mapping_file", "mapping"):
                variable = f"{prefix}_{key.upper()}"
                if variable in os.environ or variable in dotenv:
                    values[key] = os.environ.get(variable, dotenv.get(variable))
                    continue
                for layer in layers:
                    if key in layer:
                        values[key] = layer[key]
                        break
            mapping_file = (
                os.path.expandvars(str(values["mapping_file"])) if values.get("mapping_file") else None
            )
            if mapping_file is None and values.get("mapping") in (None, ""):
                continue
            yield PluginMapping(kind, name, values.get("mapping"), mapping_file)


def project_mappings(
    root: Path, environment: str | None = None
) -> tuple[list[tuple[PluginMapping, MappingConfig]], list[str]]:
    """Every mapping the project's plugins use, parsed; and a warning for each that cannot be read."""
    found: list[tuple[PluginMapping, MappingConfig]] = []
    warnings: list[str] = []
    for plugin in plugin_mappings(root, environment):
        if plugin.mapping_file and "$" in plugin.mapping_file:
            warnings.append(f"{plugin.name}: an unset variable in mapping_file; not checked with the others")
            continue
        try:
            found.append((plugin, plugin.load(root)))
        except MappingError as exc:
            warnings.append(f"{plugin.name}: {'; '.join(exc.problems)} (not checked with the others)")
    return found, warnings


def project_problems(
    mapping: MappingConfig,
    name: str = "this mapping",
    root: Path | None = None,
    *,
    replaces: str | None = None,
) -> tuple[list[str], list[str]]:
    """Problems of ``mapping`` used together with the project's other mappings, and warnings.

    The cross-mapping rules (a property written twice in one group type, 5 group types, 1000
    properties) over everything one Amplitude project receives from the Meltano project in the
    active environment. ``replaces`` is the mapping file ``mapping`` is a new version of (the
    editor's): the project's use of that file counts as ``mapping``. Empty outside a project.
    """
    root = root or project_root()
    if root is None:
        return [], []
    try:
        found, warnings = project_mappings(root)
    except ProjectError as exc:
        return [], [f"{exc}; the project's other mappings were not checked"]
    mine = _resolved(root, replaces) if replaces else None
    configs = {
        plugin.name: config
        for plugin, config in found
        if mine is None or not plugin.mapping_file or _resolved(root, plugin.mapping_file) != mine
    }
    return problems_together({name: mapping, **configs}), warnings


def _resolved(root: Path, path: str) -> Path:
    candidate = Path(path)
    return (candidate if candidate.is_absolute() else root / candidate).resolve()


def validate_in_project(document: Any, mapping_file: str | None = None) -> list[str]:
    """``validate``'s problems for a mapping document, then the project-wide ones (the editor's check)."""
    try:
        mapping = parse_mapping(document)
    except MappingError as exc:
        return exc.problems
    problems, _ = project_problems(mapping, mapping_file or "this mapping", replaces=mapping_file)
    return problems


def pairing_problems(root: Path | None = None) -> list[str]:
    """Each job's tap and target must read the same mapping (the target's decides what is sent).

    A job task ``tap-salesforce-groups target-amplitude-groups`` whose plugins read different
    mappings, or whose target reads none, would send stray group types or miss fields.
    """
    root = root or project_root()
    if root is None:
        return []
    try:
        project = read_project(root)
        plugins = {p.plugin: p for p in plugin_mappings(root)}
    except ProjectError as exc:
        return [str(exc)]
    taps = {str(p.get("name")) for p in project["plugins"]["extractors"] if isinstance(p, dict)}
    targets = {str(p.get("name")) for p in project["plugins"]["loaders"] if isinstance(p, dict)}
    pairs: list[tuple[str, str]] = []
    for job in project.get("jobs") or []:
        for task in (job or {}).get("tasks") or []:
            words = str(task).split() if not isinstance(task, list) else [str(w) for w in task]
            pairs += [(a, b) for a, b in itertools.pairwise(words) if a in taps and b in targets]
    if not pairs and TAP in taps and TARGET in targets:
        pairs = [(TAP, TARGET)]
    problems = []
    for tap, target in dict.fromkeys(pairs):
        tap_mapping = plugins.get(tap)
        if tap_mapping is None or tap_mapping.kind != "extractors":
            continue  # not ours, or no mapping: the tap itself says so
        target_mapping = plugins.get(target)
        if target_mapping is None:
            if _ours("loaders", _chain(_loaders(project), target)):
                problems.append(
                    f"{target} has no mapping, but runs behind {tap}: set its mapping_file to "
                    f"{tap_mapping.mapping_file or 'the same mapping'} (both plugins read the same mapping)"
                )
            continue
        if _content(tap_mapping, root) != _content(target_mapping, root):
            problems.append(
                f"{tap} reads {tap_mapping.name.split(' ', 1)[1]} but {target} reads "
                f"{target_mapping.name.split(' ', 1)[1]}: both plugins must read the same mapping"
            )
    return problems


def _loaders(project: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(p.get("name")): p for p in project["plugins"]["loaders"] if isinstance(p, dict)}


def _content(plugin: PluginMapping, root: Path) -> Any:
    """The normalised mapping, or the setting itself when it does not parse."""
    try:
        return MappingConfig.to_dict(
            PluginMapping("loaders", "", plugin.mapping, plugin.mapping_file).load(root)
        )
    except MappingError:
        return (plugin.mapping, plugin.mapping_file)
