"""Every design note the code points at is in this repository.

`docs/SPEC.md §N` names a section that exists, `docs/...` paths exist, and no bare "SPEC §" or "reference/..."
is left.
"""

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


# -- the README, docs/*.md and code comments name tests and code that exist -----------------------
PACKAGES = ("tap-salesforce-groups", "target-amplitude-groups", "groups-mapping")
PROSE = ("README.md", "docs/*.md")
FILE_SUFFIXES = {
    "py",
    "md",
    "json",
    "jsonl",
    "yml",
    "yaml",
    "toml",
    "txt",
    "crt",
    "pem",
    "key",
    "html",
    "js",
    "css",
}


def prose_text() -> dict[str, str]:
    names = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *PROSE],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    # docs/SPEC.md and docs/reference/ are shared notes (the contract, other projects' code), kept
    # identical to their source.
    return {
        n: (PROJECT_ROOT / n).read_text(encoding="utf-8")
        for n in names
        if n != "docs/SPEC.md" and not n.startswith("docs/reference/")
    }


def definitions() -> dict[str, list[str]]:
    """Module stems and class names of the three packages -> the source text that defines them."""
    found: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in (PROJECT_ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            found.setdefault(path.stem, []).append(text)
            for name in re.findall(r"^\s*class (\w+)", text, re.M):
                found.setdefault(name, []).append(text)
    return found


def defines(texts: list[str], name: str) -> bool:
    pattern = rf"^\s*(?:async )?(?:def|class) {name}\b|^\s*{name}\s*[:=]|self\.{name}\s*[:=]"
    return any(re.search(pattern, text, re.M) for text in texts)


def test_test_citations_name_tests_that_exist():
    """`tests/x.py::test_y` and `::test_y` in prose and code name a file and a test that exist."""
    every_test = {
        name
        for path in (PROJECT_ROOT / "tests").rglob("*.py")
        for name in re.findall(r"^\s*def (test_\w+)", path.read_text(encoding="utf-8"), re.M)
    }
    problems = []
    for name, text in {**tracked_text(), **prose_text()}.items():
        if name == "tests/ops/test_pointers.py":
            continue
        for path, test in re.findall(r"(?<![\w/])(tests/[\w/]+\.py)(?:::(\w+))?", text):
            source = PROJECT_ROOT / path
            if not source.exists():
                problems.append(f"{name}: {path} does not exist")
            elif test and not re.search(rf"^\s*def {test}\b", source.read_text(encoding="utf-8"), re.M):
                problems.append(f"{name}: {path} has no {test}")
        for test in re.findall(r"(?<![\w.])::(test_\w+)", text):
            if test not in every_test:
                problems.append(f"{name}: no test is named {test}")
    assert problems == []


def test_prose_names_code_that_exists():
    """`module.name` and `Class.name` in the README and docs/ name something defined there."""
    defined = definitions()
    problems = []
    for name, text in prose_text().items():
        for owner, member in re.findall(r"`(\w+)\.(\w+)(?:\([^`]*\))?`", text):
            if owner in defined and member not in FILE_SUFFIXES and not defines(defined[owner], member):
                problems.append(f"{name}: `{owner}.{member}` is not defined")
    assert problems == []
