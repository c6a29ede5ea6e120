"""Collects per-record peak lists and metadata from text formats into SpectraChunks."""
import numpy as np

from megatron_nexa.data.spectrum import SpectraChunk, pad_peak_lists


class ChunkBuilder:
    def __init__(self, source_file: str):
        self.source_file = source_file
        self.reset()

    def reset(self):
        self.mz, self.intensity, self.precursor = [], [], []
        self.meta = {k: [] for k in ("charge", "polarity", "rt", "run_id", "instrument", "smiles", "inchikey",
                                     "record_id")}
        self.rejects: list[tuple[str, str, str]] = []

    def add(self, mz, intensity, precursor_mz: float, **meta):
        self.mz.append(np.asarray(mz, dtype=np.float64))
        self.intensity.append(np.asarray(intensity, dtype=np.float64))
        self.precursor.append(precursor_mz)
        for k, values in self.meta.items():
            values.append(meta.get(k))

    def reject(self, record: str, reason: str, detail: str = ""):
        """``reason`` is a fixed phrase (a key of the manifest's counts); what varies goes in ``detail``."""
        self.rejects.append((record, reason, detail))

    def __len__(self):
        return len(self.mz)

    def flush(self) -> tuple[SpectraChunk, list[tuple[str, str, str]]]:
        mz, inten, count = pad_peak_lists(self.mz, self.intensity)
        n = len(count)
        cols = {
            "charge": np.array([c or 0 for c in self.meta["charge"]], dtype=np.int8),
            "polarity": np.array([p or 0 for p in self.meta["polarity"]], dtype=np.int8),
            "rt": np.array([np.nan if r is None else r for r in self.meta["rt"]], dtype=np.float32),
            "source_file": np.full(n, self.source_file, dtype=object),
        }
        for k in ("run_id", "instrument", "smiles", "inchikey", "record_id"):
            cols[k] = np.array(self.meta[k], dtype=object)
        out = SpectraChunk(mz, inten, count, np.array(self.precursor, dtype=np.float64), cols), self.rejects
        self.reset()
        return out
