"""GeMS-layout HDF5 (DreaMS): flat root datasets of one length N, read in row chunks with h5py.

``spectrum`` (N, 2, P): row 0 m/z, row 1 intensity, zero-padded; ``precursor_mz`` (N,); optional
``RT`` (s), ``charge``, ``name`` or ``file_name`` (the LC-MS run), ``instrument accuracy est.``, ``lsh``.
Only ``rows`` rows are in memory at a time, whatever N is.
"""
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import pyarrow as pa

from megatron_nexa.data.spectrum import SpectraChunk

RUN_COLUMNS = ("name", "file_name")


def validate(path: str) -> int:
    """Check the layout and return N, or raise naming the file and the offending dataset."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        if "spectrum" not in f or "precursor_mz" not in f:
            raise ValueError(f"{path}: GeMS layout needs root datasets 'spectrum' and 'precursor_mz' "
                             f"(found: {sorted(f.keys())})")
        spec = f["spectrum"]
        if spec.ndim != 3 or spec.shape[1] != 2:
            raise ValueError(f"{path}: dataset 'spectrum' must have shape (N, 2, P), got {spec.shape}")
        n = spec.shape[0]
        for name, ds in f.items():
            if isinstance(ds, h5py.Dataset) and ds.shape[:1] != (n,):
                raise ValueError(f"{path}: dataset {name!r} has {ds.shape[0] if ds.shape else 'no'} rows, "
                                 f"'spectrum' has {n}: all root datasets must have the same length")
        return n


def _strings(values: np.ndarray) -> np.ndarray:
    """bytes/str column → object array of str, decoding each distinct value once (hash-based, no sort)."""
    encoded = pa.array(values.astype(object), type=pa.binary()).dictionary_encode()
    decoded = np.array([u.decode("utf-8", "replace") for u in encoded.dictionary.to_pylist()], dtype=object)
    return decoded[encoded.indices.to_numpy()]


def read_rows(path: str, start: int, stop: int, rows: int) -> Iterator[tuple[SpectraChunk, list]]:
    source = Path(path).name
    if stop <= start:  # a file with no rows: say so, like an empty MGF
        empty = np.zeros((0, 0), np.float32)
        yield SpectraChunk(empty, empty, np.zeros(0, np.int32), np.zeros(0)), [("-", "empty file: no rows")]
        return
    with h5py.File(path, "r") as f:
        run_col = next((c for c in RUN_COLUMNS if c in f), None)
        for a in range(start, stop, rows):
            b = min(a + rows, stop)
            spec = f["spectrum"][a:b]
            n, _, width = spec.shape
            cols = {"record_id": pa.array(np.arange(a, b)).cast(pa.string()),  # row number in the file
                    "source_file": pa.repeat(pa.scalar(source), n),
                    "rt": f["RT"][a:b].astype(np.float32) if "RT" in f else np.full(n, np.nan, np.float32)}
            if "charge" in f:
                charge = f["charge"][a:b].astype(np.int8)
                cols["charge"] = charge
                cols["polarity"] = np.sign(charge).astype(np.int8)
            if run_col:
                cols["run_id"] = _strings(f[run_col][a:b])
            yield SpectraChunk(spec[:, 0], spec[:, 1], np.full(n, width, np.int32),
                               f["precursor_mz"][a:b].astype(np.float64), cols), []
