"""Which peaks a spectrum keeps when it has more than ``k``: one rule for preprocessing (``top_k``), tokenisation
(``max_peaks``) and the exported processor, which ships this file as it is (so it imports numpy only).

The rule: higher intensity first; among equal intensities the lower m/z; among equal both, the earlier peak. A
partition alone is not a rule: which of several peaks tied at the cut it keeps is an accident of its algorithm,
which another implementation (a user's own preprocessing) cannot reproduce.
"""
import numpy as np


def most_intense(intensity: np.ndarray, mz: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` peaks each row keeps, ascending (so in input order): ``[n, min(k, w)]``.

    ``intensity`` and ``mz`` are ``[n, w]``; a slot that holds no peak must have intensity ``-inf`` (it is kept only
    when a row has fewer than ``k`` peaks). A partition finds the cut in linear time; only rows where the cut splits
    a run of equal intensities are sorted in full, which keeps preprocessing at the partition's cost."""
    n, width = intensity.shape
    if width <= k:
        return np.broadcast_to(np.arange(width), (n, width)).copy()
    top = np.argpartition(-intensity, k - 1, axis=1)[:, :k]
    kept = np.take_along_axis(intensity, top, 1)
    cut = kept.min(1, keepdims=True)
    split = ((intensity == cut).sum(1) > (kept == cut).sum(1)) & np.isfinite(cut[:, 0])
    if split.any():
        rows = np.flatnonzero(split)
        top[rows] = np.lexsort((mz[rows], -intensity[rows]), axis=1)[:, :k]
    return np.sort(top, axis=1)
