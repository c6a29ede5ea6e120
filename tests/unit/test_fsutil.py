"""atomic_write_*: the target holds the old or the new bytes, never a mix, and no temp file is left."""
import os

import pytest

from megatron_nexa.fsutil import atomic_write_text


def test_atomic_write_is_whole_or_nothing(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        atomic_write_text(target, "newer")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["state.json"]
