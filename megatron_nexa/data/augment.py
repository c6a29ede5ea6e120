"""Augmented views of a spectrum for contrastive learning (InfoNCE): peak dropout, intensity noise,
small m/z jitter. Each view is renormalised to its base peak and re-sorted by m/z."""
import numpy as np

from megatron_nexa.config import AugmentConfig


def augmented_view(mz: np.ndarray, inten: np.ndarray, rng: np.random.Generator,
                   cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    keep = rng.random(len(mz)) >= cfg.peak_dropout
    if not keep.any():
        keep[np.argmax(inten)] = True  # never an empty view: the base peak stays
    mz = mz[keep].astype(np.float64) + rng.normal(0.0, cfg.mz_jitter, keep.sum())
    inten = inten[keep].astype(np.float64) * np.exp(rng.normal(0.0, cfg.intensity_noise, keep.sum()))
    order = np.argsort(mz, kind="stable")
    mz, inten = mz[order], inten[order]
    return mz.astype(np.float32), (inten / inten.max()).astype(np.float32)
