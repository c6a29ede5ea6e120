"""``nexa-plan``'s per-GPU memory against every peak measured on a GPU, from the recorded ``gpu_step`` JSON.

The plan is recomputed for each row with today's formulas (the ``plan_gib`` stored in older rows came from
earlier ones): same model, layers, micro-batch, ZeRO stage and DeepSpeed settings, recompute and
attention as the row's variant, the GELU recomputed or saved as the row's layers did. Rows of variants
since retired are mapped to what they ran (``RETIRED``).
Prints measured / plan per row and the range per kind of row. No GPU needed.

    python benchmarks/plan_memory.py [gpu_step JSON ...]   (default: benchmarks/results/*/*gpu_step*.json)
"""
import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gpu_variants import VARIANTS, Variant, ds_config, plan_gib, variant_config  # noqa: E402
from megatron_nexa.config import AttentionBackend, Recompute  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RETIRED = {  # name in an old JSON -> the variant it ran, in today's terms (RESULTS.md says when each changed)
    "zero3_leaf": VARIANTS["zero3"],  # layer leaves became the shipped zero3.json (§4, §7)
    "zero3_leaf_full": VARIANTS["zero3_full"],
    "zero3_leaf_selective": VARIANTS["zero3_selective"],
    "zero3_leaf_mb2x": VARIANTS["zero3_mb2x"],
    "zero3_nogathersync": VARIANTS["zero3"],  # its patch is the engine's one_rank_fetch now (§21)
    "zero3_nobias_compile_layers_nogathersync": VARIANTS["zero3_nobias_compile_layers"],
    "zero3_hd64": Variant(head_dim=64),
}

# Runs whose compiled layers saved the GELU's output although their rows say recompute_gelu: torch.compile's
# partitioner moved the recomputed GELU into the forward until commit 38efccb (RESULTS.md §26).
GELU_SAVED_BY_COMPILE = {"benchmarks/results/2026-11-27-h200-whole-7b-gelu-recompute/run1_gpu_step_3b_full.json"}


def kind(variant: Variant) -> str:
    if variant.attention == AttentionBackend.LOCAL:
        return "megatron local attention"
    if variant.recompute == Recompute.FULL:
        return "full recompute"
    return f"ZeRO-{ds_config(variant)['zero_optimization']['stage']}, SDPA"


def compare(paths: list[Path]) -> list[dict]:
    """One dict per engine row with a peak measured on a GPU: where it came from, what it ran, measured and plan GiB."""
    rows = []
    for path in paths:
        run = json.loads(path.read_text())
        if not run["env"].get("cuda"):
            continue  # peaks are measured on CUDA only
        a = run["args"]
        name = str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)
        for r in run["rows"]:
            variant = RETIRED.get(r["variant"], VARIANTS.get(r["variant"]))
            if r.get("peak_gib") is None or variant is None or not variant.engine:
                continue
            cfg = variant_config(a["model"], a["layers"], a["micro_batch"], variant)
            # rows written before model.recompute_gelu existed ran layers that saved the GELU's output
            recompute_gelu = r.get("recompute_gelu", False) and name not in GELU_SAVED_BY_COMPILE
            cfg.model = replace(cfg.model, recompute_gelu=recompute_gelu)
            plan = plan_gib(cfg, variant, cfg.train.micro_batch_size)
            rows.append({"file": name,
                         "model": a["model"], "layers": a["layers"], "variant": r["variant"], "kind": kind(variant),
                         "micro_batch": cfg.train.micro_batch_size,
                         "peak_gib": r["peak_gib"], "plan_gib": plan, "ratio": r["peak_gib"] / plan})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", nargs="*", type=Path)
    args = p.parse_args()
    paths = args.json or sorted((REPO / "benchmarks/results").glob("*/*gpu_step*.json"))
    rows = compare(paths)
    print(f"{'file':<58} {'model':<8} {'L':>3} {'variant':<40} {'mb':>4} {'peak':>7} {'plan':>7} {'peak/plan':>9}")
    for r in rows:
        print(f"{r['file']:<58} {r['model']:<8} {r['layers']:>3} {r['variant']:<40} {r['micro_batch']:>4} "
              f"{r['peak_gib']:7.2f} {r['plan_gib']:7.2f} {r['ratio']:9.3f}")
    print()
    for k in sorted({r["kind"] for r in rows}):
        ratios = [r["ratio"] for r in rows if r["kind"] == k]
        print(f"{k:<26} {len(ratios):3d} rows: measured / plan {min(ratios):.3f} - {max(ratios):.3f}")


if __name__ == "__main__":
    main()
