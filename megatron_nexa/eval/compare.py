"""Does a pretrained feature set beat its baselines beyond the noise of the test split?

Each pretrained feature set ([CLS], mean of peak tokens) is compared with the same pooling of the
random-init encoder (baseline c), with the binned spectrum (baseline b) and, for retrieval, with the rankings
that have no head: matchms library search (baseline a), spectral entropy, spec2vec and the MS2DeepScore-style
Siamese model. The 95 % interval of the difference comes from resampling test structures and
the heads' seeds (metrics.paired_bootstrap), so "better" means the whole interval is on the better side of
zero.
"""
from dataclasses import dataclass

import numpy as np

from megatron_nexa.downstream.metrics import paired_bootstrap, verdict

PER_ROW = ("fingerprint_tanimoto", "rt_abs_error", "candidate_hit@1")  # per test row, from the heads
PRETRAINED = {"pretrained encoder": "random-init encoder", "pretrained, mean of peaks": "random-init, mean of peaks"}
BINNED, LIBRARY_SEARCH = "binned spectrum", "matchms CosineGreedy"
RETRIEVAL_ONLY = (LIBRARY_SEARCH, "spectral entropy", "spec2vec", "MS2DeepScore-style Siamese")  # no fingerprint or RT


@dataclass(frozen=True)
class Metric:
    label: str
    row: str | None  # key in the per-row scores; None: retrieval hit@1, which has no head
    groups: str  # which structure keys the rows belong to
    higher_is_better: bool


METRICS = (Metric("FP Tanimoto", "fingerprint_tanimoto", "fingerprint", True),
           Metric("RT MAE (s)", "rt_abs_error", "rt", False),
           Metric("candidate hit@1", "candidate_hit@1", "candidates", True),
           Metric("retrieval hit@1", None, "retrieval", True))


def compare(rows: dict[str, dict[str, np.ndarray]], retrieval_hit1: dict[str, np.ndarray],
            groups: dict[str, np.ndarray], seed: int = 0) -> list[dict]:
    """``rows[feature set][PER_ROW key]`` ``[seeds, rows]`` (or ``[rows]``), ``retrieval_hit1[ranking]`` per
    query, ``groups[Metric.groups]`` the structure of each row. One record per (pretrained feature set,
    baseline, metric); a ranking absent from ``retrieval_hit1`` and a metric without rows (RT in a lab no LC
    system of which was trained on) give none."""
    out = []
    for model, random_init in PRETRAINED.items():
        for baseline in (random_init, BINNED, *RETRIEVAL_ONLY):
            for metric in METRICS:
                if metric.row is None:
                    name = baseline if baseline in RETRIEVAL_ONLY else f"{baseline} (cosine)"
                    if name not in retrieval_hit1:
                        continue
                    a, b = retrieval_hit1[f"{model} (cosine)"], retrieval_hit1[name]
                elif baseline in RETRIEVAL_ONLY:  # rankings without a head predict no fingerprint or RT
                    continue
                else:
                    a, b = rows[model][metric.row], rows[baseline][metric.row]
                if np.shape(a)[-1] == 0:
                    continue
                diff, low, high = paired_bootstrap(a, b, groups[metric.groups], seed=seed)
                out.append({"model": model, "baseline": baseline, "metric": metric.label, "difference": diff,
                            "ci95": [low, high], "rows": int(np.shape(a)[-1]), "verdict": verdict(metric.higher_is_better, low, high)})
    return out


def render_comparisons(records: list[dict]) -> str:
    lines = ["pretrained minus baseline (95 % interval, test structures and head seeds resampled; RT: negative is "
             "better)",
             f"{'pretrained features':<27}{'baseline':<28}{'metric':<17}{'difference':>11}{'95 % interval':>22}  verdict"]
    for r in records:
        low, high = r["ci95"]
        lines.append(f"{r['model']:<27}{r['baseline']:<28}{r['metric']:<17}{r['difference']:>+11.3f}"
                     f"{f'[{low:+.3f}, {high:+.3f}]':>22}  {r['verdict']}")
    return "\n".join(lines)
