"""Read access to one dataset version: its manifest, each split's shards, peaks and metadata by index."""
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from megatron_nexa.data.indexed import IndexedPeaks
from megatron_nexa.data.manifest import Manifest


class SplitView:
    """All shards of one split as one index space ``0 … len-1``; shards open lazily."""

    def __init__(self, root: Path, manifest: Manifest, split: str):
        self.root, self.split = root, split
        self.prefixes = [str(root / p) for p in manifest.shard_prefixes(split)]
        sizes = [s["num_spectra"] for s in manifest.shards.get(split, [])]
        self.offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self._peaks: dict[int, IndexedPeaks] = {}
        self._meta: dict[int, object] = {}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, i: int) -> tuple[int, int]:
        if not 0 <= i < len(self):
            raise IndexError(f"{self.root} {self.split}: index {i} out of range for {len(self)} spectra")
        shard = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return shard, i - int(self.offsets[shard])

    def shard_peaks(self, shard: int) -> IndexedPeaks:
        if shard not in self._peaks:
            peaks = IndexedPeaks(self.prefixes[shard])
            expected = int(self.offsets[shard + 1] - self.offsets[shard])
            if len(peaks) != expected:
                raise ValueError(f"{self.prefixes[shard]}.idx: {len(peaks)} spectra, manifest says {expected}")
            self._peaks[shard] = peaks
        return self._peaks[shard]

    def shard_metadata(self, shard: int):
        if shard not in self._meta:
            self._meta[shard] = pq.read_table(self.prefixes[shard] + ".parquet")
        return self._meta[shard]

    def peaks(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        shard, j = self.locate(i)
        return self.shard_peaks(shard)[j]

    def metadata(self, i: int) -> dict:
        shard, j = self.locate(i)
        return {k: v[0] for k, v in self.shard_metadata(shard).slice(j, 1).to_pydict().items()}

    def has_column(self, name: str) -> bool:
        return bool(self.prefixes) and name in pq.read_schema(self.prefixes[0] + ".parquet").names

    def column(self, name: str) -> np.ndarray:
        """One metadata column over the whole split (e.g. ``rt``, ``run_id``), in index order."""
        parts = [pq.read_table(p + ".parquet", columns=[name]).column(name).to_numpy(zero_copy_only=False)
                 for p in self.prefixes]
        return np.concatenate(parts) if parts else np.zeros(0)

    def num_peaks(self) -> np.ndarray:
        parts = [self.shard_peaks(k).num_peaks() for k in range(len(self.prefixes))]
        return np.concatenate(parts) if parts else np.zeros(0, np.int32)


class DatasetVersion:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.manifest = Manifest.load(str(self.root))

    @cached_property
    def splits(self) -> dict[str, SplitView]:
        return {s: SplitView(self.root, self.manifest, s) for s in self.manifest.shards}

    def __getitem__(self, split: str) -> SplitView:
        if split not in self.splits:
            raise KeyError(f"{self.root}: no split {split!r} (has {sorted(self.splits)})")
        return self.splits[split]
