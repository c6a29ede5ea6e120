"""Spectrum retrieval by structure: for each test spectrum, rank the other test spectra and ask whether one
of the same structure (InChIKey first block) is in the top k.

The test split shares no structure with training, so a library built from training spectra could never
hit; the library is the rest of the test split (leave one out), the analog-search setting. Rankings
compared in one run: matchms CosineGreedy and ModifiedCosine (fragment matching, what library search
does today; ModifiedCosine is called ModifiedCosineGreedy in matchms 0.33), and the cosine of every
feature set of the evaluation (encoder embeddings, binned spectra).
"""
import numpy as np

from megatron_nexa.downstream.features import subset_groups

KS = (1, 5, 20)


class LibraryError(ValueError):
    """A retrieval library in which no structure has two spectra: no spectrum could find another."""


def retrieval_library(keys: np.ndarray, limit: int | None, seed: int, name: str = "the test split") -> np.ndarray:
    """Indices of whole structures drawn up to ``limit`` spectra (:func:`subset_groups`); a library without a
    query is an error that says so, before any model is fitted."""
    chosen = subset_groups(keys, limit, seed)
    if len(chosen) == len(np.unique(np.asarray(keys)[chosen].astype(str))):
        raise LibraryError(f"{name}: a retrieval library of {len(chosen):,} spectra has no structure with two "
                           f"spectra, so there is nothing to retrieve" + (f"; raise the limit ({limit})" if limit
                                                                           else ""))
    return chosen


def first_hits(similarity: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The queries (rows whose key occurs again) and the 0-based rank of each one's first same-key hit
    (``n`` if none); self-matches are excluded, ties keep index order."""
    n = len(keys)
    sim = similarity.astype(np.float64).copy()
    np.fill_diagonal(sim, -np.inf)
    same = keys[:, None] == keys[None, :]
    np.fill_diagonal(same, False)
    queries = np.flatnonzero(same.any(1))
    order = np.argsort(-sim[queries], axis=1, kind="stable")
    ranked_same = np.take_along_axis(same[queries], order, axis=1)
    return queries, np.where(ranked_same.any(1), ranked_same.argmax(1), n)


def hit_rates(first: np.ndarray, ks=KS) -> dict[str, float]:
    """hit@k from the 0-based first-hit ranks of :func:`first_hits`, and the number of queries."""
    return {f"hit@{k}": float((first < k).mean()) for k in ks} | {"queries": int(len(first))}


def embedding_similarity(embeddings: np.ndarray) -> np.ndarray:
    e = np.nan_to_num(embeddings.astype(np.float64))
    e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return e @ e.T


def matchms_similarity(items: list[tuple], modified: bool, tolerance: float = 0.01) -> np.ndarray:
    from matchms import Spectrum, calculate_scores
    from matchms.similarity import CosineGreedy, ModifiedCosineGreedy

    spectra = [Spectrum(mz=np.asarray(mz, float), intensities=np.asarray(inten, float),
                        metadata={"precursor_mz": float(prec)}) for mz, inten, prec in items]
    similarity = ModifiedCosineGreedy(tolerance=tolerance) if modified else CosineGreedy(tolerance=tolerance)
    scores = calculate_scores(spectra, spectra, similarity, is_symmetric=True)
    matrix = scores.to_array()
    if matrix.dtype.names:  # structured: ("<Name>_score", "<Name>_matches")
        matrix = matrix[next(n for n in matrix.dtype.names if n.endswith("score"))]
    return np.nan_to_num(matrix.astype(np.float64))
