"""Masked peak modelling: hide 15–30 % of a row's peaks and keep their m/z and intensity bins as targets.

Per row a ratio is drawn from [ratio_min, ratio_max]; ``max(1, round(ratio · n_peaks))`` peaks are
masked (never ``[CLS]``/``[PREC]``/``[SEP]``), uniformly or, with ``intensity_weighted``, with probability
proportional to intensity (DreaMS' choice: intense peaks carry the information). A masked token keeps
neither m/z nor intensity. Targets: m/z bin ``floor((mz - mz_min) / (mz_max - mz_min) · mz_bins)``; an m/z
outside [mz_min, mz_max) gets target ``IGNORE`` (no loss, no accuracy) rather than a clamped bin that
would teach the edges. Intensity bin: ``ceil(intensity · bins) - 1`` over the relative intensity (0, 1].
"""
import numpy as np

from megatron_nexa.config import MaskingConfig, ModelConfig
from megatron_nexa.data.tokenize import Row
from megatron_nexa.tokens import TokenType

IGNORE = -100


def mz_bins(mz: np.ndarray, model: ModelConfig) -> np.ndarray:
    scaled = (mz.astype(np.float64) - model.mz_min) / (model.mz_max - model.mz_min) * model.mz_bins
    bins = np.floor(scaled).astype(np.int64)
    return np.where((bins >= 0) & (bins < model.mz_bins), bins, IGNORE)


def intensity_bins(intensity: np.ndarray, model: ModelConfig) -> np.ndarray:
    return np.clip(np.ceil(intensity.astype(np.float64) * model.intensity_bins) - 1, 0,
                   model.intensity_bins - 1).astype(np.int64)


def mask_row(row: Row, rng: np.random.Generator, masking: MaskingConfig, model: ModelConfig):
    """Mask ``row`` in place; return (mz_target, intensity_target), IGNORE except at masked tokens."""
    length = len(row.token_type)
    mz_target = np.full(length, IGNORE, np.int64)
    int_target = np.full(length, IGNORE, np.int64)
    peaks = np.flatnonzero(row.token_type == TokenType.PEAK)
    if len(peaks) == 0:
        return mz_target, int_target
    ratio = rng.uniform(masking.ratio_min, masking.ratio_max)
    k = min(len(peaks), max(1, int(round(ratio * len(peaks)))))
    p = None
    if masking.intensity_weighted:
        w = row.intensity[peaks].astype(np.float64)
        p = w / w.sum() if w.sum() > 0 else None
        if p is not None and np.count_nonzero(p) < k:
            p = None
    chosen = rng.choice(peaks, size=k, replace=False, p=p)
    mz_target[chosen] = mz_bins(row.mz[chosen], model)
    int_target[chosen] = intensity_bins(row.intensity[chosen], model)
    row.token_type[chosen] = TokenType.MASK
    row.mz[chosen] = 0.0
    row.intensity[chosen] = 0.0
    return mz_target, int_target
