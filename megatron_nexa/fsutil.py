"""Small files written so that a kill at any moment leaves either the old content or the new, never a torn file.

Imports nothing from megatron_nexa, so data/, engine/ and the CLIs can all use it.
"""
import os
from pathlib import Path


def fsync_path(path: str | Path) -> None:
    """fsync a file or directory by name (a directory: so that renames and new entries in it survive a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Temp file in the same directory, flushed and fsynced, renamed over ``path``, then the directory fsynced
    (so the rename itself survives a crash). On any error the temp file is removed and ``path`` is untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())
