"""Metrics for fingerprints and heteroscedastic regression."""
import numpy as np
from scipy.stats import norm


def tanimoto(pred_bits: np.ndarray, true_bits: np.ndarray) -> float:
    """Mean Jaccard/Tanimoto similarity of binary fingerprints (rows with both empty count as 1)."""
    p, t = pred_bits.astype(bool), true_bits.astype(bool)
    inter, union = (p & t).sum(1), (p | t).sum(1)
    return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean())


def cosine(pred: np.ndarray, true: np.ndarray) -> float:
    num = (pred * true).sum(1)
    den = np.linalg.norm(pred, axis=1) * np.linalg.norm(true, axis=1)
    return float(np.where(den > 0, num / np.maximum(den, 1e-12), 0.0).mean())


def regression(mean: np.ndarray, std: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """MAE and calibration: the fraction of targets inside the predicted central 68 % and 95 % intervals."""
    z = np.abs(target - mean) / np.maximum(std, 1e-12)
    return {"mae": float(np.abs(target - mean).mean()),
            "coverage_68": float((z <= norm.ppf(0.84)).mean()), "coverage_95": float((z <= norm.ppf(0.975)).mean())}
