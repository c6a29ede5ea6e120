"""One split of one dataset version, ready for training: peaks by index (memory-mapped) plus the
per-spectrum arrays the objectives need (precursor m/z, RT, run) cached as ``.npy`` files and
memory-mapped, so a rank's memory does not grow with the dataset.
"""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from megatron_nexa.data.version import DatasetVersion

CACHE_VERSION = 1


class DataError(ValueError):
    """A shard, its index or its manifest is inconsistent; the message names shard and index."""


def _build_cache(split, directory: Path, fingerprint: str) -> None:
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    prec, rt, run_names = [], [], []
    for prefix in split.prefixes:
        table = pq.read_table(prefix + ".parquet", columns=["precursor_mz", "rt", "run_id"])
        prec.append(table.column("precursor_mz").to_numpy())
        rt.append(table.column("rt").to_numpy(zero_copy_only=False).astype(np.float32))
        run_names.append(np.asarray(table.column("run_id").to_pylist(), dtype=object))
    n = len(split)
    prec = np.concatenate(prec) if prec else np.zeros(0)
    rt = np.concatenate(rt) if rt else np.zeros(0, np.float32)
    names = np.concatenate(run_names) if run_names else np.zeros(0, object)
    if len(prec) != n:
        raise DataError(f"{split.root} {split.split}: metadata has {len(prec)} rows, the manifest {n}")
    has_run = np.array([bool(r) for r in names], dtype=bool)
    run = np.full(n, -1, np.int32)
    if has_run.any():
        _, codes = np.unique(names[has_run].astype(str), return_inverse=True)
        run[has_run] = codes
    eligible = np.flatnonzero((run >= 0) & np.isfinite(rt))
    order = eligible[np.lexsort((rt[eligible], run[eligible]))]
    pos = np.full(n, -1, np.int64)
    pos[order] = np.arange(len(order))
    n_runs = int(run.max()) + 1 if n else 0
    bounds = np.zeros((n_runs, 2), np.int64)
    if len(order):
        runs_sorted = run[order]
        starts = np.searchsorted(runs_sorted, np.arange(n_runs), side="left")
        ends = np.searchsorted(runs_sorted, np.arange(n_runs), side="right")
        bounds = np.stack([starts, ends], axis=1)
    for name, arr in {"precursor_mz": prec.astype(np.float64), "rt": rt, "run": run, "ro_order": order,
                      "ro_pos": pos, "ro_rt": rt[order], "ro_bounds": bounds}.items():
        np.save(tmp / f"{name}.npy", arr)
    (tmp / "cache.json").write_text(json.dumps({"version": CACHE_VERSION, "fingerprint": fingerprint, "n": n}))
    try:
        os.replace(tmp, directory)
    except OSError:  # another rank finished first: its identical cache stands
        shutil.rmtree(tmp, ignore_errors=True)


class SpectraSource:
    """``peaks(i)`` and metadata arrays for split ``split`` of the dataset version at ``root``."""

    def __init__(self, root: str | Path, split: str = "train", cache_dir: str | Path | None = None):
        self.version = DatasetVersion(root)
        self.view = self.version[split]
        self.name = f"{self.version.manifest.name}_v{self.version.manifest.version}:{split}"
        fingerprint = json.dumps([self.version.manifest.extra.get("fingerprint"), self.version.manifest.shards.get(split)],
                                 sort_keys=True)
        directory = Path(cache_dir or Path(root) / "cache") / split
        meta = directory / "cache.json"
        valid = meta.exists() and json.loads(meta.read_text()) == {
            "version": CACHE_VERSION, "fingerprint": fingerprint, "n": len(self.view)}
        if not valid:
            shutil.rmtree(directory, ignore_errors=True)
            directory.parent.mkdir(parents=True, exist_ok=True)
            _build_cache(self.view, directory, fingerprint)
        load = lambda name: np.load(directory / f"{name}.npy", mmap_mode="r")  # noqa: E731
        self.precursor_mz, self.rt, self.run = load("precursor_mz"), load("rt"), load("run")
        self.ro_order, self.ro_pos, self.ro_rt, self.ro_bounds = (load("ro_order"), load("ro_pos"), load("ro_rt"),
                                                                  load("ro_bounds"))

    def __len__(self) -> int:
        return len(self.view)

    def peaks(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        shard, j = self.view.locate(i)
        try:
            mz, inten = self.view.shard_peaks(shard)[j]
        except (ValueError, OSError) as e:
            raise DataError(f"{self.view.prefixes[shard]}: {e}") from None
        if len(mz) == 0 or not (np.isfinite(mz).all() and np.isfinite(inten).all()):
            why = "has no peaks" if len(mz) == 0 else "holds non-finite values"
            raise DataError(f"{self.view.prefixes[shard]}.bin: spectrum {j} (index {i} of {self.name}) {why}")
        return mz, inten
