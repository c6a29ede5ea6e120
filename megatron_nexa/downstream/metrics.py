"""Metrics for fingerprints and heteroscedastic regression, per row and averaged, and a paired bootstrap
that tells a difference between two predictors from the noise of a small test split (``verdict``)."""
import numpy as np
from scipy.stats import norm


def tanimoto_rows(pred_bits: np.ndarray, true_bits: np.ndarray) -> np.ndarray:
    """Jaccard/Tanimoto similarity of each pair of binary fingerprints (rows with both empty count as 1)."""
    p, t = pred_bits.astype(bool), true_bits.astype(bool)
    inter, union = (p & t).sum(1), (p | t).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def cosine_rows(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    num = (pred * true).sum(1)
    den = np.linalg.norm(pred, axis=1) * np.linalg.norm(true, axis=1)
    return np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)


def regression_rows(mean: np.ndarray, std: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """Absolute error, and whether the target lies inside the predicted central 68 % and 95 % intervals."""
    z = np.abs(target - mean) / np.maximum(std, 1e-12)
    return {"abs_error": np.abs(target - mean), "in_68": (z <= norm.ppf(0.84)).astype(float),
            "in_95": (z <= norm.ppf(0.975)).astype(float)}


def regression(mean: np.ndarray, std: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """MAE and calibration: the fraction of targets inside the predicted central 68 % and 95 % intervals."""
    return regression_summary(regression_rows(mean, std, target))


MIN_CALIBRATION_ROWS = 20  # fewer validation rows than this: intervals are left as the head gives them


def std_scale(mean: np.ndarray, std: np.ndarray, target: np.ndarray) -> float:
    """The factor for predicted standard deviations that best fits held-out errors (the maximum-likelihood
    scale of a Gaussian, sqrt of the mean squared z-score: "std scaling", Levi et al. 2019). A head fitted
    on training features is overconfident on new structures; this scale, taken on a structure-disjoint
    validation split, repairs its intervals without touching its means."""
    if len(target) == 0:
        raise ValueError("std_scale needs at least one validation row")
    z = (np.asarray(target, np.float64) - mean) / np.maximum(std, 1e-12)
    return float(np.sqrt(np.mean(z ** 2)))


def regression_summary(rows: dict[str, np.ndarray]) -> dict[str, float]:
    """:func:`regression`'s numbers from :func:`regression_rows`' per-row scores."""
    return {"mae": float(rows["abs_error"].mean()), "coverage_68": float(rows["in_68"].mean()),
            "coverage_95": float(rows["in_95"].mean())}


def paired_bootstrap(a: np.ndarray, b: np.ndarray, groups: np.ndarray, n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:
    """mean(a - b) over rows, with a percentile confidence interval from resampling whole groups.

    ``a`` and ``b`` score the same rows; spectra of one structure are not independent, so the groups
    (InChIKey first blocks) are what is resampled, each bringing all of its rows. ``a`` and ``b`` may be
    ``[seeds, rows]``, scores of models trained with several seeds (seed s of ``a`` paired with seed s of
    ``b``): each draw then resamples the seeds too, so the interval covers training noise as well as the
    test sample.
    """
    diff = np.atleast_2d(np.asarray(a, np.float64) - np.asarray(b, np.float64))  # [seeds, rows]
    _, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    n_groups, n_seeds = int(inverse.max()) + 1, diff.shape[0]
    sums = np.stack([np.bincount(inverse, d, minlength=n_groups) for d in diff])  # [seeds, groups]
    counts = np.bincount(inverse, minlength=n_groups).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=n_boot)  # [n_boot, groups]
    seed_weights = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_boot) / n_seeds  # [n_boot, seeds]
    estimates = ((seed_weights @ sums) * draws).sum(1) / np.maximum(draws @ counts, 1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return float(diff.mean()), float(low), float(high)


def verdict(higher_is_better: bool, low: float, high: float) -> str:
    """"better" / "worse" when the whole interval of (model - baseline) is on one side of zero."""
    if low <= 0 <= high:
        return "within noise"
    return "better" if (low > 0) == higher_is_better else "worse"
