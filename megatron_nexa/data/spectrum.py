"""A chunk of spectra as padded numpy arrays plus per-spectrum metadata columns.

Readers fill chunks; filters transform them with whole-array numpy operations (no per-spectrum Python
loop), which is what lets HDF5 → shards run at hundreds of thousands of spectra per second.
"""
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

# Per-spectrum metadata kept beside the peaks (aligned by index within a shard).
METADATA_SCHEMA = pa.schema([
    ("precursor_mz", pa.float64()),
    ("charge", pa.int8()),  # signed; 0 = unknown
    ("polarity", pa.int8()),  # +1 positive, -1 negative, 0 unknown
    ("rt", pa.float32()),  # seconds; NaN = unknown
    ("run_id", pa.string()),  # LC-MS run (GeMS name/file_name) or LC system (MassBank LC_SYSTEM)
    ("instrument", pa.string()),
    ("smiles", pa.string()),
    ("inchikey", pa.string()),
    ("source_file", pa.string()),
    ("record_id", pa.string()),  # TITLE / native id / row number in the source file
    ("num_peaks", pa.int32()),
])
STRING_COLUMNS = [f.name for f in METADATA_SCHEMA if f.type == pa.string()]


@dataclass
class SpectraChunk:
    """``n`` spectra: row i holds ``count[i]`` peaks in columns ``[0, count[i])`` of ``mz``/``intensity``."""

    mz: np.ndarray  # (n, P) float32/float64
    intensity: np.ndarray  # (n, P)
    count: np.ndarray  # (n,) int32
    precursor_mz: np.ndarray  # (n,) float64
    columns: dict = field(default_factory=dict)  # other METADATA_SCHEMA columns: numpy/pyarrow array or list

    def __len__(self) -> int:
        return len(self.count)


    def metadata_table(self) -> pa.Table:
        data = {"precursor_mz": self.precursor_mz, "num_peaks": self.count}
        n = len(self)
        for f in METADATA_SCHEMA:
            if f.name in data:
                continue
            value = self.columns.get(f.name)
            if value is None:
                value = np.full(n, np.nan, np.float32) if f.name == "rt" else (
                    [None] * n if f.type == pa.string() else np.zeros(n, np.int8))
            data[f.name] = value
        arrays = [data[f.name].cast(f.type) if isinstance(data[f.name], pa.Array)
                  else pa.array(data[f.name], type=f.type) for f in METADATA_SCHEMA]
        return pa.Table.from_arrays(arrays, schema=METADATA_SCHEMA)


def take_rows(values, rows: np.ndarray):
    """Rows of a column held as a numpy array, a pyarrow array or a list."""
    if isinstance(values, np.ndarray):
        return values[rows]
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.take(pa.array(rows))
    return [values[i] for i in rows]


def pad_peak_lists(mz_lists: list, intensity_lists: list, dtype=np.float64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ragged peak lists → (mz, intensity, count) padded with NaN to the longest list."""
    count = np.fromiter((len(m) for m in mz_lists), dtype=np.int32, count=len(mz_lists))
    width = int(count.max()) if len(count) else 0
    mz = np.full((len(count), width), np.nan, dtype)
    inten = np.full((len(count), width), np.nan, dtype)
    if width:
        mask = np.arange(width)[None, :] < count[:, None]
        if count.sum():
            mz[mask] = np.concatenate(mz_lists)
            inten[mask] = np.concatenate(intensity_lists)
    return mz, inten, count
