"""Every design note the code points at is in this repository: `docs/SPEC.md §N` names a section
that exists, `docs/...` paths exist, and no bare "SPEC §" or "reference/..." is left."""

from __future__ import annotations

import re
import subprocess

from emulators.pipeline import PROJECT_ROOT

PATTERNS = ("*.py", "Makefile", "*.toml", "*.yml", "*.cfg", ".ci/*")


def tracked_text() -> dict[str, str]:
    names = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *PATTERNS],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {n: (PROJECT_ROOT / n).read_text(encoding="utf-8") for n in names if (PROJECT_ROOT / n).is_file()}


def test_pointers_resolve_inside_the_repository():
    spec = (PROJECT_ROOT / "docs" / "SPEC.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^## (\w+)\.", spec, re.M))
    problems = []
    for name, text in tracked_text().items():
        if name == "tests/ops/test_pointers.py":
            continue
        for match in re.finditer(r"(?<!docs/)\bSPEC §|(?<![\w/])reference/[\w.-]+\.md", text):
            problems.append(f"{name}: {match.group(0)!r} does not say where (docs/...)")
        for path in re.findall(r"(?<![\w/.])docs/[\w./-]*\w", text):
            if not (PROJECT_ROOT / path).exists():
                problems.append(f"{name}: {path} does not exist")
        problems += [
            f"{name}: docs/SPEC.md has no section {n}"
            for n in re.findall(r"docs/SPEC\.md §(\w+)", text)
            if n not in sections
        ]
    assert problems == []
