"""The work directory of a preprocessing job: ``plan.json`` and the finished units, checked before use.

Every state file is written atomically, yet a machine crash, a removal cut short or a kill between two
steps can still leave state that does not check out. Such state is named, discarded and redone, never fatal:
each unit records the job's fingerprint and the size of each of its files, so a unit from other inputs or
settings, or one missing a file or holding a short one, is never reused.
"""
import json
import os
import shutil
from pathlib import Path

from megatron_nexa.fsutil import atomic_write_text, fsync_path

PLAN = "plan.json"
COUNTS = "counts.json"


def unit_dir(work: Path, i: int) -> Path:
    return work / f"unit_{i:06d}"


def read_plan(work: Path, log) -> str | None:
    """The fingerprint in ``plan.json``; None when there is none or it is unreadable (then named and removed)."""
    plan = work / PLAN
    if not plan.exists():
        return None
    try:
        return json.loads(plan.read_text())["fingerprint"]
    except (ValueError, KeyError, TypeError) as e:
        log(f"{plan}: unreadable ({e or type(e).__name__}); discarding it")
        plan.unlink()
        return None


def write_plan(work: Path, fingerprint: str, unit_names: list[str]) -> None:
    atomic_write_text(work / PLAN, json.dumps({"fingerprint": fingerprint, "units": unit_names}))


def publish_unit(tmp: Path, final: Path, counts: dict) -> None:
    """Record each file's size in ``counts.json``, fsync everything, then rename ``tmp`` to ``final``."""
    counts["files"] = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
    for name in counts["files"]:
        fsync_path(tmp / name)
    atomic_write_text(tmp / COUNTS, json.dumps(counts))
    os.replace(tmp, final)  # atomic: a unit directory is complete or absent
    fsync_path(final.parent)


def unit_problem(final: Path, name: str, fingerprint: str) -> str | None:
    """Why the finished unit in ``final`` cannot be reused, naming the file; None when it can."""
    counts_file = final / COUNTS
    try:
        counts = json.loads(counts_file.read_text())
        files, mine = counts["files"], counts["fingerprint"] == fingerprint and counts["unit"] == name
    except FileNotFoundError:
        return f"{counts_file}: missing"
    except (ValueError, KeyError, TypeError) as e:
        return f"{counts_file}: unreadable ({e or type(e).__name__})"
    if not mine:
        return f"{counts_file}: made from other inputs or settings"
    for file, size in files.items():
        path = final / file
        actual = path.stat().st_size if path.is_file() else None
        if actual != size:
            return f"{path}: " + ("missing" if actual is None else f"{actual} bytes, {COUNTS} says {size}")
    return None


def discard_damaged_units(work: Path, unit_names: list[str], fingerprint: str, log) -> None:
    for i, name in enumerate(unit_names):
        final = unit_dir(work, i)
        if final.exists() and (problem := unit_problem(final, name, fingerprint)):
            log(f"{problem}; discarding {final.name} and redoing it")
            shutil.rmtree(final)


def remove_work(work: Path) -> None:
    """The plan first: a removal cut short leaves only units, each judged by ``unit_problem`` when next seen. Only
    what a job writes goes (the plan, ``unit_*``); the directory itself only when that leaves it empty, since
    ``--work-dir`` may name a directory that holds other files."""
    (work / PLAN).unlink(missing_ok=True)
    for unit in work.glob("unit_*"):
        shutil.rmtree(unit, ignore_errors=True)
    try:
        work.rmdir()
    except OSError:  # not empty (other files), or already gone
        pass
