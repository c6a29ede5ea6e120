"""Peak filters, applied to whole chunks at once.

Per spectrum, in order: drop peaks with non-finite or non-positive m/z or intensity, outside the
optional m/z range, or above ``precursor + precursor_tolerance`` (when set); reject the spectrum if its
precursor m/z is invalid or above ``max_precursor_mz``, or fewer than ``min_peaks`` peaks remain, or it comes from
one of ``exclude_labs`` (``data/labs.py``; a dataset for pretraining that a lab-disjoint test can trust); keep
the ``top_k`` most intense peaks (ties: ``data.peak_selection``'s rule); sort by m/z, equal m/z in input order;
divide intensities by the base peak (max = 1.0).
"""
import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from megatron_nexa.config import ConfigError
from megatron_nexa.data.labs import labs_of, matching_lab
from megatron_nexa.data.mixing import GOLDEN, mix64
from megatron_nexa.data.peak_selection import most_intense
from megatron_nexa.data.spectrum import SpectraChunk, take_rows

SPLITS = ("train", "val", "test")
# Raised whenever the same inputs and settings would give other output (a filter or the peak selection changed), so
# that a dataset version made before is known to differ: 2, the tie rule of data.peak_selection.
PROCESSING_REVISION = 2


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
    exclude_labs: tuple[str, ...] = ()  # spectra of these labs are rejected (data/labs.py)

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
        if any(not name or ":" in name for name in self.exclude_labs):
            bad("exclude_labs", f"lab names are non-empty and hold no ':', got {list(self.exclude_labs)}")
        # a set of labs: the same labs in another order or repeated make the same dataset (and fingerprint)
        object.__setattr__(self, "exclude_labs", tuple(sorted(set(self.exclude_labs))))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["split_fractions"] = list(self.split_fractions)
        d["exclude_labs"] = list(self.exclude_labs)
        if not self.exclude_labs:  # absent when unused: a version made before the option keeps its fingerprint
            del d["exclude_labs"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessSettings":
        return cls(**{**d, "split_fractions": tuple(d["split_fractions"]),
                      "exclude_labs": tuple(d.get("exclude_labs", ()))})


def excluded_lab_reason(lab: str) -> str:
    return f"from excluded lab {lab}"


@dataclass
class Filtered:
    chunk: SpectraChunk  # kept spectra: float32, left-aligned, sorted by m/z, zero-padded
    rejected: np.ndarray  # row numbers (in the input chunk) that were rejected
    reasons: list[str]  # one per rejected row
    peaks_in: int
    peaks_out: int
    labs: frozenset = frozenset()  # the labs of the chunk's spectra, when exclude_labs is set (to check its names)


def filter_chunk(chunk: SpectraChunk, s: PreprocessSettings) -> Filtered:
    n, width = chunk.mz.shape
    mz, inten, prec = chunk.mz, chunk.intensity, chunk.precursor_mz
    with np.errstate(invalid="ignore"):  # NaN compares False: it is dropped with the non-positive values
        valid = mz > 0
        valid &= inten > 0
        if np.isinf(mz).any() or np.isinf(inten).any():
            valid &= (mz < np.inf) & (inten < np.inf)
        if (chunk.count < width).any():
            valid &= np.arange(width)[None, :] < chunk.count[:, None]
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
    labs = frozenset()
    if s.exclude_labs:
        spectrum_labs = labs_of(_column(chunk, "run_id"))
        lab = matching_lab(spectrum_labs, s.exclude_labs)
        reason[lab != ""] = [excluded_lab_reason(x) for x in lab[lab != ""]]
        labs = frozenset(spectrum_labs.tolist()) - {""}
    keep = reason == ""
    rows = np.flatnonzero(keep)
    if len(rows) < n:
        mz, inten, valid, n_valid = mz[rows], inten[rows], valid[rows], n_valid[rows]

    if width > s.top_k:  # keep the top_k most intense valid peaks, in input order
        top = most_intense(np.where(valid, inten, -np.inf), mz, s.top_k)
        mz, inten, valid = (np.take_along_axis(a, top, 1) for a in (mz, inten, valid))
    # Valid peaks must end up left-aligned and in ascending m/z; GeMS rows already are (fast path).
    # With invalid slots keyed +inf, "left-aligned and ascending" is "the keys are sorted".
    key = np.where(valid, mz, np.inf)
    if not (key[:, 1:] >= key[:, :-1]).all():
        order = np.argsort(key, axis=1, kind="stable")
        mz, inten, valid = (np.take_along_axis(a, order, 1) for a in (mz, inten, valid))
    count = np.minimum(n_valid, s.top_k).astype(np.int32)
    out_width = int(count.max()) if len(count) else 0
    mz, inten, valid = mz[:, :out_width], inten[:, :out_width], valid[:, :out_width]
    inten = np.where(valid, inten, 0)
    base = inten.max(1, initial=0)
    scale = np.divide(1, base, out=np.zeros_like(base), where=base > 0)[:, None]
    kept = SpectraChunk(np.where(valid, mz, 0).astype(np.float32, copy=False),
                        (inten * scale).astype(np.float32, copy=False), count, chunk.precursor_mz[rows],
                        {k: take_rows(v, rows) for k, v in chunk.columns.items()})
    rejected = np.flatnonzero(~keep)
    return Filtered(kept, rejected, list(reason[rejected]), int(chunk.count.sum()), int(count.sum()), labs)


# Keys of the NH universal hash (Black et al., UMAC): fixed, so hashes are stable across runs and machines.
_KEYS = np.random.default_rng(0x6E657861).integers(0, 2**32, size=(4, 1024), dtype=np.uint64).astype(np.uint32)
def spectrum_hashes(chunk: SpectraChunk) -> np.ndarray:
    """64-bit hash of (precursor m/z, processed peaks) per spectrum, for exact-duplicate removal.

    Expects ``filter_chunk`` output (float32, zero-padded). Two NH hashes (Toeplitz keys: collision odds
    2^-64 for two different spectra) over the (m/z, intensity) bit patterns,
    ``sum_j ((mz_j + k_j) mod 2^32) * ((int_j + k'_j) mod 2^32) mod 2^64`` with per-column keys (so order
    matters), folded with the precursor and peak count through splitmix64. NH costs one multiply per peak,
    which keeps hashing off the critical path of a 550 M-spectrum build.
    """
    width = chunk.mz.shape[1]
    if width > _KEYS.shape[1]:
        raise ValueError(f"spectrum_hashes supports up to {_KEYS.shape[1]} peaks, got {width}")
    a, b = chunk.mz.view(np.uint32), chunk.intensity.view(np.uint32)

    def nh(k: int) -> np.ndarray:
        x, y = a + _KEYS[k, :width], b + _KEYS[k + 1, :width]  # uint32 adds wrap mod 2^32
        # 64-bit products and row sums mod 2^64; einsum widens in its buffers, no uint64 temporaries
        return np.einsum("ij,ij->i", x, y, dtype=np.uint64, casting="unsafe")

    with np.errstate(over="ignore"):
        h1, h2 = nh(0), nh(2)
        prec = chunk.precursor_mz.astype(np.float64).view(np.uint64)
        return mix64(mix64(h1) ^ h2 ^ mix64(prec ^ (chunk.count.astype(np.uint64) * GOLDEN)))


def _column(chunk: SpectraChunk, name: str) -> np.ndarray:
    values = chunk.columns.get(name)
    if values is None:
        return np.full(len(chunk), None, dtype=object)
    if isinstance(values, np.ndarray):
        return values
    return np.asarray(values.to_pylist() if hasattr(values, "to_pylist") else values, dtype=object)


def _unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct strings (None → "") and the index of each value among them; hash-based, no sort."""
    encoded = pa.array(values, type=pa.string(), from_pandas=True).fill_null("").dictionary_encode()
    return (encoded.dictionary.to_numpy(zero_copy_only=False).astype(object),
            encoded.indices.to_numpy(zero_copy_only=False))


def assign_splits(chunk: SpectraChunk, s: PreprocessSettings) -> np.ndarray:
    """0/1/2 = train/val/test per spectrum, from a stable hash of its split key.

    Keys: ``inchikey`` → first InChIKey block (the skeleton: stereo-isomers stay together), else the
    SMILES; ``run`` → run id; missing, or ``record`` → the record itself. Same key → same split, always.
    Each distinct key is hashed once, so a chunk of one LC-MS run costs one hash.
    """
    n = len(chunk)
    keys = np.full(n, "", dtype=object)
    if s.split_key == "inchikey":
        unique, inverse = _unique(_column(chunk, "inchikey"))
        keys = np.array([f"inchikey:{u.split('-')[0]}" if u else "" for u in unique], dtype=object)[inverse]
        missing = keys == ""
        if missing.any():
            unique, inverse = _unique(_column(chunk, "smiles")[missing])
            keys[missing] = np.array([f"smiles:{u}" if u else "" for u in unique], dtype=object)[inverse]
    elif s.split_key == "run":
        unique, inverse = _unique(_column(chunk, "run_id"))
        keys = np.array([f"run:{u}" if u else "" for u in unique], dtype=object)[inverse]
    missing = np.flatnonzero(keys == "")
    if len(missing):
        files, records = _column(chunk, "source_file")[missing], _column(chunk, "record_id")[missing]
        keys[missing] = [f"record:{f}:{r}" for f, r in zip(files, records)]
    unique, inverse = _unique(keys)
    seed = str(s.split_seed).encode()
    u = np.array([int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8, key=seed).digest(), "little") / 2**64
                  for k in unique])
    edges = np.cumsum(s.split_fractions)[:2]
    return np.searchsorted(edges, u, side="right").astype(np.int8)[inverse]
