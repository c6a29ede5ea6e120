"""``python -m megatron_nexa.finetune.report RUN_DIR``: every ``finetune_*`` run under a run directory in one
table, grouped by task and encoder (pretrained / random-init) with the mean ± SD over seeds, beside each run's
trivial baseline; then pretrained minus random-init per task, with a 95 % interval from resampling test
structures and the seeds both encoders ran (``metrics.paired_bootstrap``, as ``nexa-eval`` does)."""
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from megatron_nexa.downstream.metrics import paired_bootstrap, verdict

METRICS = {"fingerprint": ("fingerprint_tanimoto", "fingerprint_cosine"), "rt": ("mae", "coverage_68", "coverage_95"),
           "ccs": ("mae", "coverage_68", "coverage_95"), "contrastive": ("hit@1", "hit@5", "hit@20")}
HEADLINE = {"fingerprint": ("fingerprint_tanimoto", True), "rt": ("abs_error", False),
            "ccs": ("abs_error", False), "contrastive": ("hit@1", True)}  # rows.npz key, higher is better
ENCODERS = ("pretrained", "random-init")


@dataclass
class Run:
    results: dict
    seed: int
    folder: Path


def collect(run_dir: str | Path) -> dict[tuple[str, str], list[Run]]:
    """(task, encoder) -> its runs, ordered by seed; the encoder and seed come from each run's finetune.json."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for path in sorted(Path(run_dir).glob("finetune_*/results.json")):
        results = json.loads(path.read_text())
        settings_file = path.parent / "finetune.json"
        settings = json.loads(settings_file.read_text()) if settings_file.exists() else {}
        encoder = ENCODERS[1] if settings.get("random_init") else ENCODERS[0]
        groups.setdefault((results["task"], encoder), []).append(Run(results, settings.get("seed", 0), path.parent))
    return {k: sorted(v, key=lambda r: r.seed) for k, v in sorted(groups.items())}


def _baseline(results: dict) -> tuple[str, dict]:
    name = next(k for k, v in results.items() if isinstance(v, dict))
    return name, results[name]


def _fmt(value: float, like: float | None = None) -> str:
    """3 decimals for scores, 1 for values of 10 and above (MAE in s or Å²); ``like`` picks by another value."""
    return f"{value:.3f}" if abs(value if like is None else like) < 10 else f"{value:.1f}"


def table(run_dir: str | Path) -> str:
    groups = collect(run_dir)
    lines = [f"{'task':<12}{'encoder':<13}{'seeds':<7}{'metrics':<42}{'fine-tuned (mean±SD)':<30}baseline, same run"]
    for (task, encoder), runs in groups.items():
        keys = METRICS[task]
        values = {k: np.array([r.results[k] for r in runs]) for k in keys}
        first = values[keys[0]]
        spread = f"±{_fmt(first.std(ddof=1), like=first.mean())}" if len(runs) > 1 else ""
        tuned = " / ".join([_fmt(first.mean()) + spread] + [_fmt(values[k].mean()) for k in keys[1:]])
        base_name = _baseline(runs[0].results)[0]  # the mean over seeds, like the fine-tuned column
        base = {k: np.mean([_baseline(r.results)[1][k] for r in runs]) for k in keys}
        lines.append(f"{task:<12}{encoder:<13}{len(runs):<7}{' / '.join(keys):<42}{tuned:<30}"
                     f"{' / '.join(_fmt(base[k]) for k in keys)}  {base_name}")
    comparisons = _compare(groups, seed=0)
    if comparisons:
        lines.append("pretrained minus random-init (95 % interval, test structures and seeds resampled; MAE: negative is "
                     "better)")
        lines.append(f"{'task':<12}{'per-row score':<22}{'seeds':<7}{'rows':>6}{'difference':>12}{'95 % interval':>22}"
                     "  verdict")
        for c in comparisons:
            low, high = c["ci95"]
            lines.append(f"{c['task']:<12}{c['score']:<22}{len(c['seeds']):<7}{c['rows']:>6}{c['difference']:>+12.3f}"
                         f"{f'[{low:+.3f}, {high:+.3f}]':>22}  {c['verdict']}")
    return "\n".join(lines)


def compare(run_dir: str | Path, seed: int = 0) -> list[dict]:
    """One record per task run with both encoders on common seeds, each run having its rows.npz."""
    return _compare(collect(run_dir), seed)


def _compare(groups: dict[tuple[str, str], list[Run]], seed: int) -> list[dict]:
    out = []
    for task in METRICS:
        pre, rnd = ({r.seed: r for r in groups.get((task, e), [])} for e in ENCODERS)
        seeds = sorted(set(pre) & set(rnd))
        folders = [runs[s].folder for runs in (pre, rnd) for s in seeds]  # pretrained seeds, then random-init
        if not seeds or not all((f / "rows.npz").exists() for f in folders):
            continue
        score, higher_is_better = HEADLINE[task]
        loaded = [np.load(f / "rows.npz") for f in folders]
        for folder, rows in zip(folders, loaded):
            if not np.array_equal(rows["keys"], loaded[0]["keys"]):
                raise ValueError(f"{folder}/rows.npz: scored different test rows than {folders[0]}; runs compared "
                                 "must share the dataset and task settings")
        scores = np.stack([rows[score] for rows in loaded])  # [2 x seeds, rows]
        a, b = scores[:len(seeds)], scores[len(seeds):]
        diff, low, high = paired_bootstrap(a, b, loaded[0]["keys"], seed=seed)
        out.append({"task": task, "score": score, "seeds": seeds, "rows": int(a.shape[1]), "difference": diff,
                    "ci95": [low, high], "verdict": verdict(higher_is_better, low, high)})
    return out


if __name__ == "__main__":
    print(table(sys.argv[1] if len(sys.argv) > 1 else "runs/demo"))
