"""Writes one split's shards (``.bin`` + ``.idx`` + ``.parquet``) to any fsspec destination.

Each file's sha256 is computed from the bytes as they are written, so a remote bucket is never read
back to checksum it.
"""
import hashlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from megatron_nexa.data.indexed import index_bytes
from megatron_nexa.data.spectrum import METADATA_SCHEMA


class HashingWriter:
    """A binary file-like object that hashes and counts what passes through it."""

    def __init__(self, f):
        self.f, self.sha, self.size, self.closed = f, hashlib.sha256(), 0, False

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self):
        self.f.flush()

    def writable(self) -> bool:
        return True

    def close(self):
        if not self.closed:
            self.f.close()
            self.closed = True

    def record(self) -> dict:
        return {"bytes": self.size, "sha256": self.sha.hexdigest()}


@dataclass
class ShardInfo:
    name: str
    num_spectra: int = 0
    num_peaks: int = 0
    files: dict = field(default_factory=dict)  # suffix -> {"bytes", "sha256"}


class SplitWriter:
    """Appends spectra to ``<dir>/<split>_NNNNN.*``, starting a new shard past ``shard_bytes``.

    Metadata is buffered and written in Parquet row groups of ``row_group`` rows, however small the appends.
    """

    def __init__(self, fs, directory: str, split: str, shard_bytes: int, row_group: int = 65_536):
        self.fs, self.directory, self.split, self.shard_bytes = fs, directory, split, shard_bytes
        self.row_group = row_group
        self.shards: list[ShardInfo] = []
        self._bin = self._meta = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def _open(self):
        info = ShardInfo(f"{self.split}_{len(self.shards):05d}")
        self.shards.append(info)
        self.fs.makedirs(self.directory, exist_ok=True)
        base = f"{self.directory}/{info.name}"
        self._bin = HashingWriter(self.fs.open(base + ".bin", "wb"))
        self._meta_file = HashingWriter(self.fs.open(base + ".parquet", "wb"))
        self._meta = pq.ParquetWriter(self._meta_file, METADATA_SCHEMA)
        self._sizes = []

    def append(self, values: np.ndarray, sizes: np.ndarray, meta: pa.Table) -> None:
        """``values``: float32 peaks of ``len(sizes)`` spectra back to back; ``sizes`` in elements."""
        start_row, start_elem = 0, 0
        ends = np.cumsum(sizes, dtype=np.int64)
        while start_row < len(sizes):
            if self._bin is None:
                self._open()
            room = (self.shard_bytes - self._bin.size) // 4  # elements left in this shard
            # rows whose end fits; at least one row so an oversized spectrum still lands somewhere
            stop = int(np.searchsorted(ends, start_elem + room, side="right"))
            stop = max(stop, start_row + (1 if self._bin.size == 0 else 0))
            if stop > start_row:
                stop_elem = int(ends[stop - 1])
                self._bin.write(np.ascontiguousarray(values[start_elem:stop_elem], dtype=np.float32))
                self._sizes.append(sizes[start_row:stop])
                self._pending.append(meta.slice(start_row, stop - start_row))
                self._pending_rows += stop - start_row
                if self._pending_rows >= self.row_group:
                    self._flush_meta()
                info = self.shards[-1]
                info.num_spectra += stop - start_row
                info.num_peaks += (stop_elem - start_elem) // 2
                start_row, start_elem = stop, stop_elem
            if start_row < len(sizes):
                self._close()

    def detach(self):
        """Copy buffered metadata rows out of the caller's tables, so a finished unit's memory map can go."""
        if self._pending_rows >= self.row_group // 2:
            self._flush_meta()
        elif self._pending:  # a few rows (val/test): copy them rather than write a tiny row group
            table = pa.concat_tables(self._pending)
            self._pending = [table.take(np.arange(table.num_rows))]

    def _flush_meta(self):
        if self._pending:
            self._meta.write_table(pa.concat_tables(self._pending))
        self._pending, self._pending_rows = [], 0

    def _close(self):
        if self._bin is None:
            return
        info = self.shards[-1]
        base = f"{self.directory}/{info.name}"
        self._flush_meta()
        self._bin.close()
        self._meta.close()
        self._meta_file.close()
        sizes = np.concatenate(self._sizes) if self._sizes else np.zeros(0, np.int32)
        idx = HashingWriter(self.fs.open(base + ".idx", "wb"))
        idx.write(index_bytes(sizes))
        idx.close()
        info.files = {".bin": self._bin.record(), ".idx": idx.record(), ".parquet": self._meta_file.record()}
        self._bin = self._meta = None

    def close(self) -> list[ShardInfo]:
        self._close()
        return self.shards
