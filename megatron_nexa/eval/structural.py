"""Does a similarity follow structural similarity? The measures the spec2vec and MS2DeepScore papers report,
computed for every ranking of a retrieval library on the same rows.

- ``spearman``: over sampled pairs of spectra, the Spearman correlation between the method's similarity and the
  Tanimoto similarity of the two structures. The pairs are drawn once per library with a seed (two distinct
  spectra with a structure each, a bounded count, so every method is scored on the same pairs in seconds).
- ``top5_tanimoto``: each query's 5 most similar other spectra, the mean Tanimoto of their structures to the
  query's; what a chemist sees at the top of a hit list. ``top5_tanimoto_analogues`` leaves out spectra of the
  query's own structure (InChIKey first block), so it scores analogue search alone: retrieval hit@k already counts
  the exact matches. Ties in similarity keep library order, as in retrieval.
Rows without a structure take part in neither.
"""
from dataclasses import dataclass

import numpy as np

from megatron_nexa.downstream.metrics import tanimoto_rows

TOP_K = 5


@dataclass(frozen=True)
class PairSample:
    i: np.ndarray
    j: np.ndarray
    tanimoto: np.ndarray


def tanimoto_pairs(bits: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    return tanimoto_rows(bits[i], bits[j])


def sample_pairs(bits: np.ndarray, valid: np.ndarray, n_pairs: int = 20000, seed: int = 0) -> PairSample:
    """``n_pairs`` pairs of distinct rows with a structure, drawn uniformly with replacement."""
    if n_pairs < 1:
        raise ValueError(f"need at least one pair, got {n_pairs}")
    rows = np.flatnonzero(valid)
    if len(rows) < 2:
        raise ValueError(f"structural similarity needs two spectra with a structure, got {len(rows)}")
    rng = np.random.default_rng(seed)
    a = rng.integers(len(rows), size=n_pairs)
    b = (a + rng.integers(1, len(rows), size=n_pairs)) % len(rows)  # never the same row
    i, j = rows[a], rows[b]
    return PairSample(i, j, tanimoto_pairs(bits, i, j))


def structural_scores(similarity: np.ndarray, bits: np.ndarray, valid: np.ndarray, keys: np.ndarray,
                      pairs: PairSample, k: int = TOP_K) -> dict[str, float]:
    """The measures above for one ``[n, n]`` similarity over the library whose rows ``bits``, ``valid`` and
    ``keys`` describe."""
    from scipy.stats import spearmanr

    n = len(valid)
    if similarity.shape != (n, n):
        raise ValueError(f"similarity is {similarity.shape}, the library has {n} rows")
    values = similarity[pairs.i, pairs.j]
    rho = spearmanr(values, pairs.tanimoto).statistic if np.ptp(values) > 0 and np.ptp(pairs.tanimoto) > 0 else 0.0
    rows = np.flatnonzero(valid)
    sim = np.asarray(similarity, np.float64)[np.ix_(rows, rows)].copy()
    np.fill_diagonal(sim, -np.inf)
    same = keys[rows][:, None] == keys[rows][None, :]
    out = {"spearman": float(rho), "pairs": int(len(values))}
    for name, mask in (("top5_tanimoto", None), ("top5_tanimoto_analogues", same)):
        s = sim if mask is None else np.where(mask, -np.inf, sim)
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        usable = np.take_along_axis(np.isfinite(s), top, axis=1)  # a query with fewer than k candidates
        tani = _tanimoto_grid(bits[rows], top)
        per_query = np.where(usable, tani, np.nan)
        has = usable.any(1)
        out[name] = float(np.nanmean(per_query[has], axis=1).mean()) if has.any() else float("nan")
    out["queries"] = int(len(rows))
    return out


def _tanimoto_grid(bits: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Tanimoto of row q to each of its neighbours ``top[q]``."""
    q = np.repeat(np.arange(len(top)), top.shape[1])
    return tanimoto_pairs(bits, q, top.ravel()).reshape(top.shape)
