"""Replacing a file so that a reader, a crash or a signal never sees half of it (both plugins use it)."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path


def write_atomically(
    path: str | os.PathLike[str],
    text: str,
    *,
    mode: int | None = None,
    backup: bool = False,
    newline: str | None = None,
) -> Path | None:
    r"""Replace ``path`` with ``text`` (UTF-8): a temporary file beside it, fsync, then rename.

    A reader sees the old content or the new, never a mix; after a crash the file is whole.
    Missing parent directories are created. A symlink stays a symlink: the file it points to
    is replaced, next to itself.

    Args:
        path: The file to replace or create.
        text: Its new content.
        mode: Permission bits to set, exactly (e.g. 0o600 for a file holding secrets; the
            temporary file is private from the start). Default: a replaced file keeps its mode
            and a new one gets the umask's (0644 under the usual 022), as ``open()`` would.
        backup: Copy the old file to ``<path>.bak`` first.
        newline: As for ``open()``: how ``\\n`` is written (``"\\r\\n"`` keeps a CRLF file CRLF).

    Returns:
        The backup's path, or None when none was made (not asked, or no old file).
    """
    given = Path(path)
    target = Path(os.path.realpath(given))
    target.parent.mkdir(parents=True, exist_ok=True)
    exists = target.exists()
    if mode is None and exists:
        mode = target.stat().st_mode & 0o777
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    # A new file without a mode: 0o666 goes through the umask, as for any file a program creates.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else 0o600)
    saved = None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        if backup and exists:
            saved = given.with_name(given.name + ".bak")
            shutil.copy2(target, saved)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    _fsync_directory(target.parent)
    return saved


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where a directory cannot be opened."""
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
