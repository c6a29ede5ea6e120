"""Peak filters, applied to whole chunks at once.

Per spectrum, in order: drop peaks with non-finite or non-positive m/z or intensity, outside the
optional m/z range, or above ``precursor + precursor_tolerance`` (when set); reject the spectrum if its
precursor m/z is invalid or above ``max_precursor_mz``, or fewer than ``min_peaks`` peaks remain; keep
the ``top_k`` most intense peaks; sort by m/z; divide intensities by the base peak (max = 1.0).
"""
import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np

from megatron_nexa.config import ConfigError
from megatron_nexa.data.spectrum import SpectraChunk

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class PreprocessSettings:
    top_k: int = 256
    min_peaks: int = 3  # DreaMS' pretraining format A also asks for >= 3 peaks
    mz_min: float | None = None
    mz_max: float | None = None
    precursor_tolerance: float | None = None  # drop peaks above precursor m/z + this (Da)
    max_precursor_mz: float | None = None
    deduplicate: bool = True  # exact duplicates (same precursor and processed peaks) are rejected
    split_key: str = "inchikey"  # "inchikey" (first block: structure), "run", or "record"
    split_fractions: tuple[float, float, float] = (0.98, 0.01, 0.01)
    split_seed: int = 0

    def __post_init__(self):
        def bad(name, why):
            raise ConfigError(f"preprocess.{name}: {why}")
        if self.top_k < 1:
            bad("top_k", f"must be >= 1, got {self.top_k}")
        if not 1 <= self.min_peaks <= self.top_k:
            bad("min_peaks", f"must be in [1, top_k={self.top_k}], got {self.min_peaks}")
        if self.mz_min is not None and self.mz_max is not None and self.mz_min >= self.mz_max:
            bad("mz_min", f"mz_min={self.mz_min} must be below mz_max={self.mz_max}")
        if self.split_key not in ("inchikey", "run", "record"):
            bad("split_key", f"{self.split_key!r} is not one of inchikey, run, record")
        if len(self.split_fractions) != 3 or min(self.split_fractions) < 0 or abs(sum(self.split_fractions) - 1) > 1e-9:
            bad("split_fractions", f"need three non-negative fractions summing to 1, got {self.split_fractions}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["split_fractions"] = list(self.split_fractions)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessSettings":
        return cls(**{**d, "split_fractions": tuple(d["split_fractions"])})


@dataclass
class Filtered:
    chunk: SpectraChunk  # kept spectra: float32, left-aligned, sorted by m/z, zero-padded
    rejected: np.ndarray  # row numbers (in the input chunk) that were rejected
    reasons: list[str]  # one per rejected row
    peaks_in: int
    peaks_out: int


def filter_chunk(chunk: SpectraChunk, s: PreprocessSettings) -> Filtered:
    n, width = chunk.mz.shape
    mz, inten, prec = chunk.mz, chunk.intensity, chunk.precursor_mz
    col = np.arange(width)
    with np.errstate(invalid="ignore"):
        valid = (col[None, :] < chunk.count[:, None]) & np.isfinite(mz) & np.isfinite(inten) & (mz > 0) & (inten > 0)
        if s.mz_min is not None:
            valid &= mz >= s.mz_min
        if s.mz_max is not None:
            valid &= mz <= s.mz_max
        if s.precursor_tolerance is not None:
            valid &= mz <= (prec + s.precursor_tolerance)[:, None]
    n_valid = valid.sum(1)

    reason = np.full(n, "", dtype=object)
    reason[n_valid < s.min_peaks] = f"fewer than {s.min_peaks} valid peaks"
    if s.max_precursor_mz is not None:
        reason[prec > s.max_precursor_mz] = f"precursor m/z above {s.max_precursor_mz}"
    reason[~(np.isfinite(prec) & (prec > 0))] = "invalid precursor m/z"
    keep = reason == ""
    rows = np.flatnonzero(keep)
    mz, inten, valid, n_valid = mz[rows], inten[rows], valid[rows], n_valid[rows]

    if width > s.top_k:  # keep the top_k most intense valid peaks
        top = np.argpartition(np.where(valid, -inten, np.inf), s.top_k - 1, axis=1)[:, : s.top_k]
        mz, inten, valid = (np.take_along_axis(a, top, 1) for a in (mz, inten, valid))
    sort_key = np.where(valid, mz, np.inf)
    if not (sort_key[:, 1:] >= sort_key[:, :-1]).all():  # GeMS rows arrive sorted: skip the sort
        order = np.argsort(sort_key, axis=1, kind="stable")
        mz, inten, valid = (np.take_along_axis(a, order, 1) for a in (mz, inten, valid))
    count = np.minimum(n_valid, s.top_k).astype(np.int32)
    out_width = int(count.max()) if len(count) else 0
    mz, inten, valid = mz[:, :out_width], inten[:, :out_width], valid[:, :out_width]
    base = np.where(valid, inten, 0).max(1, initial=0)[:, None]
    mz32 = np.where(valid, mz, 0).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        int32 = np.where(valid, inten / base, 0).astype(np.float32)
    kept = SpectraChunk(mz32, int32, count, chunk.precursor_mz[rows],
                        {k: (v[rows] if isinstance(v, np.ndarray) else [v[i] for i in rows])
                         for k, v in chunk.columns.items()})
    rejected = np.flatnonzero(~keep)
    return Filtered(kept, rejected, list(reason[rejected]), int(chunk.count.sum()), int(count.sum()))


_M1, _M2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def spectrum_hashes(chunk: SpectraChunk) -> np.ndarray:
    """64-bit hash of (precursor m/z, processed peaks) per spectrum, for exact-duplicate removal.

    Expects ``filter_chunk`` output (float32, zero-padded). Each (m/z, intensity) bit pattern is mixed with
    its column so order matters. Collision odds for 550 M spectra: ~0.8 % for one pair in the whole set.
    """
    with np.errstate(over="ignore"):
        peaks = (chunk.mz.view(np.uint32).astype(np.uint64) << np.uint64(32)) | chunk.intensity.view(np.uint32)
        cols = (np.arange(peaks.shape[1], dtype=np.uint64) + np.uint64(1)) * _GOLDEN
        h = _mix(peaks ^ cols[None, :]).sum(1, dtype=np.uint64)
        prec = chunk.precursor_mz.astype(np.float64).view(np.uint64)
        return _mix(h ^ _mix(prec) ^ (chunk.count.astype(np.uint64) * _GOLDEN))


def split_keys(chunk: SpectraChunk, key: str) -> list[str]:
    """The key that decides a spectrum's split; falls back to the record when the key is missing."""
    n = len(chunk)
    record = [f"record:{f}:{r}" for f, r in zip(chunk.columns.get("source_file", [""] * n),
                                               chunk.columns.get("record_id", range(n)))]
    if key == "record":
        return record
    if key == "run":
        runs = chunk.columns.get("run_id", [None] * n)
        return [f"run:{r}" if r else rec for r, rec in zip(runs, record)]
    keys = chunk.columns.get("inchikey", [None] * n)
    smiles = chunk.columns.get("smiles", [None] * n)
    return [f"inchikey:{k.split('-')[0]}" if k else (f"smiles:{m}" if m else rec)
            for k, m, rec in zip(keys, smiles, record)]


def assign_splits(keys: list[str], s: PreprocessSettings) -> np.ndarray:
    """0/1/2 = train/val/test, from a stable hash of each key (same key → same split, always)."""
    unique, inverse = np.unique(np.asarray(keys, dtype=object), return_inverse=True)
    seed = str(s.split_seed).encode()
    u = np.array([int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8, key=seed).digest(), "little") / 2**64
                  for k in unique])
    edges = np.cumsum(s.split_fractions)[:2]
    return np.searchsorted(edges, u, side="right").astype(np.int8)[inverse.reshape(-1)]
