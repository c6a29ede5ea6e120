"""Inputs for the heads: encoder embeddings, or the binned-spectrum vector of the classic baseline."""
import numpy as np

from megatron_nexa.data.source import SpectraSource


def subset(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Sorted indices of at most ``limit`` of ``n`` rows, drawn reproducibly (all rows if no limit)."""
    if limit and n > limit:
        return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))
    return np.arange(n)


def subset_groups(keys: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Sorted indices of whole groups (structures), drawn reproducibly until ``limit`` rows are reached, so
    that a smaller retrieval library keeps every spectrum of each structure it holds (all rows if no limit)."""
    if not limit or len(keys) <= limit:
        return np.arange(len(keys))
    unique, inverse = np.unique(np.asarray(keys).astype(str), return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    sizes = np.bincount(inverse)[order]
    chosen = order[: int(np.searchsorted(np.cumsum(sizes), limit, side="right"))]
    return np.flatnonzero(np.isin(inverse, chosen))


def structure_groups(inchikeys) -> np.ndarray:
    """InChIKey first block per spectrum, the unit of retrieval hits and of resampling; a spectrum without one is
    its own structure."""
    keys = np.array([(k or "").split("-")[0] for k in inchikeys], dtype=object)
    keys[keys == ""] = np.array([f"missing:{i}" for i in np.flatnonzero(keys == "")], dtype=object)
    return keys


def spectra(source: SpectraSource, indices: np.ndarray) -> list[tuple]:
    out = []
    for i in indices:
        mz, inten = source.peaks(int(i))
        out.append((np.asarray(mz), np.asarray(inten), float(source.precursor_mz[int(i)])))
    return out


def binned(items: list[tuple], bin_width: float = 1.0, max_mz: float = 1000.0) -> np.ndarray:
    """sqrt-intensity histogram over m/z bins, L2-normalised (the usual input of spectrum MLPs)."""
    n_bins = int(max_mz / bin_width)
    out = np.zeros((len(items), n_bins), np.float32)
    for row, (mz, inten, _) in enumerate(items):
        keep = mz < max_mz
        np.add.at(out[row], (mz[keep] / bin_width).astype(int), np.sqrt(inten[keep]))
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)
