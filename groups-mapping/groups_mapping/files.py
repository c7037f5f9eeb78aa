"""Replacing a file so that a reader, a crash or a signal never leaves half of it (both plugins use it)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def _default_mode() -> int:
    """What ``open()`` would give a new file: 0o666 less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomically(
    path: str | os.PathLike[str], text: str, *, mode: int | None = None, backup: bool = False
) -> Path | None:
    """Replace ``path`` with ``text`` (UTF-8): a temporary file beside it, fsync, then rename.

    A reader sees the old content or the new, never a mix; after a crash the file is whole.
    ``mode`` sets the permission bits (default: the old file's, else as ``open()`` would create
    it). With ``backup`` the old file is first copied to ``<path>.bak``. Missing parent
    directories are created.

    Returns:
        The backup's path, or None when none was made (not asked, or no old file).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    exists = target.exists()
    if mode is None:
        mode = target.stat().st_mode & 0o777 if exists else _default_mode()
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)  # mkstemp makes 0600 files
        saved = None
        if backup and exists:
            saved = target.with_name(target.name + ".bak")
            shutil.copy2(target, saved)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    _fsync_directory(target.parent)
    return saved


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
