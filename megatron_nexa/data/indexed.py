"""Megatron's indexed dataset layout (``MMIDIDX``), holding peaks; read back through a memory map.

``.bin``: per spectrum, float32 ``[m/z_1 … m/z_n, intensity_1 … intensity_n]`` (planar, sorted by m/z),
so one contiguous read gives a ``(2, n)`` view whose first row is a sorted m/z array, like a GeMS
``spectrum`` row without the padding.
``.idx``: ``MMIDIDX\\0\\0``, version ``<Q`` = 1, dtype code ``<B`` (7 = float32), sequence count ``<Q``,
document count ``<Q``, sizes int32 (elements = 2n), pointers int64 (bytes), document indices int64 —
byte for byte what megatron-core's ``IndexedDataset`` reads (a test opens our files with it).
"""
import os
import struct

import numpy as np

HEADER = b"MMIDIDX\x00\x00"
VERSION = 1
DTYPE_CODES = {np.dtype(np.uint8): 1, np.dtype(np.int8): 2, np.dtype(np.int16): 3, np.dtype(np.int32): 4,
               np.dtype(np.int64): 5, np.dtype(np.float64): 6, np.dtype(np.float32): 7, np.dtype(np.uint16): 8}
CODE_DTYPES = {v: k for k, v in DTYPE_CODES.items()}


def index_bytes(sizes: np.ndarray, dtype=np.float32) -> bytes:
    """The ``.idx`` file for sequences of ``sizes`` elements, one document per sequence."""
    dtype = np.dtype(dtype)
    sizes = np.asarray(sizes, dtype=np.int32)
    pointers = np.zeros(len(sizes), dtype=np.int64)
    np.cumsum(sizes[:-1].astype(np.int64) * dtype.itemsize, out=pointers[1:])
    documents = np.arange(len(sizes) + 1, dtype=np.int64)
    return b"".join([HEADER, struct.pack("<Q", VERSION), struct.pack("<B", DTYPE_CODES[dtype]),
                     struct.pack("<Q", len(sizes)), struct.pack("<Q", len(documents)),
                     sizes.tobytes(), pointers.tobytes(), documents.tobytes()])


class IndexedPeaks:
    """Memory-mapped peaks of one shard: ``peaks[i]`` → ``(mz, intensity)`` float32 views."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        idx = np.memmap(prefix + ".idx", mode="r", dtype=np.uint8)
        if bytes(idx[:9]) != HEADER:
            raise ValueError(f"{prefix}.idx: not an MMIDIDX index (bad header)")
        version, = struct.unpack("<Q", bytes(idx[9:17]))
        code = int(idx[17])
        n, n_docs = struct.unpack("<QQ", bytes(idx[18:34]))
        if version != VERSION or code not in CODE_DTYPES:
            raise ValueError(f"{prefix}.idx: unsupported version {version} or dtype code {code}")
        expected = 34 + n * 4 + n * 8 + n_docs * 8
        if len(idx) != expected:
            raise ValueError(f"{prefix}.idx: {len(idx)} bytes, expected {expected} for {n} sequences")
        self.dtype = CODE_DTYPES[code]
        self.sizes = np.frombuffer(idx, np.int32, n, 34)
        self.pointers = np.frombuffer(idx, np.int64, n, 34 + 4 * n)
        total = int(self.sizes.sum(dtype=np.int64)) * self.dtype.itemsize
        size = os.path.getsize(prefix + ".bin")
        if size != total:
            raise ValueError(f"{prefix}.bin: {size} bytes, the index says {total}")
        self._values = (np.memmap(prefix + ".bin", mode="r", dtype=self.dtype) if total
                        else np.zeros(0, self.dtype))  # an empty file cannot be memory-mapped

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.prefix}: index {i} out of range for {len(self)} spectra")
        start = int(self.pointers[i]) // self.dtype.itemsize
        size = int(self.sizes[i])
        peaks = self._values[start:start + size]
        return peaks[: size // 2], peaks[size // 2:]

    def num_peaks(self) -> np.ndarray:
        return self.sizes // 2
