"""groups_mapping.write_atomically.

The one way both plugins replace a file (mapping, meltano.yml, .env, the rotated refresh token, the run
report).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from groups_mapping import write_atomically


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_gets_the_umask_s_mode_and_missing_folders(tmp_path):
    old = os.umask(0o027)
    try:
        path = tmp_path / "a" / "b" / "file.json"
        assert write_atomically(path, "new\n", backup=True) is None  # nothing to back up
    finally:
        os.umask(old)
    assert path.read_text() == "new\n"
    assert mode(path) == 0o640


def test_a_replaced_file_keeps_its_mode_and_can_leave_a_backup(tmp_path):
    path = tmp_path / "mapping.json"
    path.write_text("old\n")
    path.chmod(0o640)
    backup = write_atomically(path, "new\n", backup=True)
    assert backup == tmp_path / "mapping.json.bak"
    assert backup.read_text() == "old\n"
    assert path.read_text() == "new\n"
    assert mode(path) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mapping.json", "mapping.json.bak"]


def test_an_explicit_mode_is_exact_even_over_a_looser_file(tmp_path):
    path = tmp_path / ".env"
    path.write_text("A=1\n")
    path.chmod(0o644)
    write_atomically(path, "A=2\n", mode=0o600)
    assert mode(path) == 0o600


def test_a_symlink_stays_a_symlink(tmp_path):
    real = tmp_path / "shared" / "meltano.yml"
    real.parent.mkdir()
    real.write_text("old\r\n")
    link = tmp_path / "meltano.yml"
    link.symlink_to(real)
    write_atomically(link, "new\n", newline="\r\n")
    assert link.is_symlink()
    assert real.read_bytes() == b"new\r\n"
    assert sorted(p.name for p in real.parent.iterdir()) == ["meltano.yml"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomically(path, "half \ud800 written")  # a lone surrogate cannot be UTF-8
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
