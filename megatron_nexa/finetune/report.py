"""``python -m megatron_nexa.finetune.report RUN_DIR``: one table of every ``finetune_<task>_<init>`` result
under a run, the pretrained encoder beside the random-init one and each run's own trivial baseline."""
import json
import sys
from pathlib import Path

METRICS = {"fingerprint": ("fingerprint_tanimoto", "fingerprint_cosine"), "rt": ("mae", "coverage_68", "coverage_95"),
           "ccs": ("mae", "coverage_68", "coverage_95"), "contrastive": ("hit@1", "hit@5", "hit@20")}


def _baseline(results: dict) -> tuple[str, dict]:
    name = next(k for k, v in results.items() if isinstance(v, dict))
    return name, results[name]


def table(run_dir: str | Path) -> str:
    lines = [f"{'task':<12}{'encoder':<12}{'metrics':<42}{'fine-tuned':<24}baseline, same run"]
    for path in sorted(Path(run_dir).glob("finetune_*/results.json")):
        r = json.loads(path.read_text())
        keys = METRICS[r["task"]]
        init = path.parent.name.removeprefix(f"finetune_{r['task']}").strip("_") or "pretrained"
        base_name, base = _baseline(r)

        def fmt(d):
            return " / ".join(f"{d[k]:.3f}" if d[k] < 10 else f"{d[k]:.1f}" for k in keys)

        lines.append(f"{r['task']:<12}{init:<12}{' / '.join(keys):<42}{fmt(r):<24}{fmt(base)}  {base_name}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(sys.argv[1] if len(sys.argv) > 1 else "runs/demo"))
