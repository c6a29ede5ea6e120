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

from megatron_nexa.data.readers.records import ChunkBuilder
from megatron_nexa.data.spectrum import SpectraChunk

RUN_COLUMNS = ("name", "file_name")


class LayoutError(ValueError):
    """A file h5py cannot open or one not in the GeMS layout: ``reason`` is the reject key, ``detail`` what is wrong."""

    def __init__(self, path: str, reason: str, detail: str):
        super().__init__(f"{path}: {reason}: {detail}")
        self.reason, self.detail = reason, detail


def validate(path: str) -> int:
    """Check the layout and return N, or raise a LayoutError naming the file and the offending dataset."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise LayoutError(path, "not a readable HDF5 file", str(e)) from None
    with f:
        def bad(detail):
            return LayoutError(path, "not the GeMS layout", detail)

        if "spectrum" not in f or "precursor_mz" not in f:
            raise bad(f"needs root datasets 'spectrum' and 'precursor_mz' (found: {sorted(f.keys())})")
        for name in ("spectrum", "precursor_mz"):
            if not isinstance(f[name], h5py.Dataset):
                raise bad(f"{name!r} is not a dataset")
        spec = f["spectrum"]
        if spec.ndim != 3 or spec.shape[1] != 2:
            raise bad(f"dataset 'spectrum' must have shape (N, 2, P), got {spec.shape}")
        n = spec.shape[0]
        for name, ds in f.items():
            if isinstance(ds, h5py.Dataset) and ds.shape[:1] != (n,):
                raise bad(f"dataset {name!r} has {ds.shape[0] if ds.shape else 'no'} rows, "
                          f"'spectrum' has {n}: all root datasets must have the same length")
        return n


def _strings(values: np.ndarray) -> np.ndarray:
    """bytes/str column → object array of str, decoding each distinct value once (hash-based, no sort)."""
    encoded = pa.array(values.astype(object), type=pa.binary()).dictionary_encode()
    decoded = np.array([u.decode("utf-8", "replace") for u in encoded.dictionary.to_pylist()], dtype=object)
    return decoded[encoded.indices.to_numpy()]


def real_peaks(mz: np.ndarray) -> np.ndarray:
    """Peaks per row before the zero padding at its end (a zero inside a row is a peak the filters drop)."""
    width = mz.shape[1]
    tail = (mz != 0)[:, ::-1]
    last = np.argmax(tail, axis=1)  # zeros after the last nonzero m/z; 0 also for an all-zero row
    return np.where(tail[np.arange(len(mz)), last], width - last, 0).astype(np.int32)


def read_rows(path: str, start: int, stop: int, rows: int) -> Iterator[tuple[SpectraChunk, list]]:
    """Rows [start, stop) in chunks of ``rows``; a chunk h5py cannot read (corrupt storage) rejects its rows."""
    source = Path(path).name
    if stop <= start:  # a file with no rows: say so, like an empty MGF
        yield _nothing(source, [("-", "empty file: no rows", "")])
        return
    with h5py.File(path, "r") as f:
        run_col = next((c for c in RUN_COLUMNS if c in f), None)
        for a in range(start, stop, rows):
            b = min(a + rows, stop)
            try:
                yield _read(f, source, run_col, a, b), []
            except OSError as e:
                yield _nothing(source, [(str(r), "unreadable HDF5 rows", f"rows {a}:{b}: {e}") for r in range(a, b)])


def _nothing(source: str, rejects: list) -> tuple[SpectraChunk, list]:
    chunk, _ = ChunkBuilder(source).flush()
    return chunk, rejects


def _read(f, source: str, run_col: str | None, a: int, b: int) -> SpectraChunk:
    spec = f["spectrum"][a:b]
    n = len(spec)
    cols = {"record_id": pa.array(np.arange(a, b)).cast(pa.string()),  # row number in the file
            "source_file": pa.repeat(pa.scalar(source), n),
            "rt": f["RT"][a:b].astype(np.float32) if "RT" in f else np.full(n, np.nan, np.float32)}
    if "charge" in f:
        charge = f["charge"][a:b].astype(np.int8)
        cols["charge"] = charge
        cols["polarity"] = np.sign(charge).astype(np.int8)
    if run_col:
        cols["run_id"] = _strings(f[run_col][a:b])
    return SpectraChunk(spec[:, 0], spec[:, 1], real_peaks(spec[:, 0]), f["precursor_mz"][a:b].astype(np.float64), cols)
