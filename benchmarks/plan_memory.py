"""``nexa-plan``'s per-GPU memory against every peak measured on a GPU, from the recorded ``gpu_step`` JSON.

The plan is recomputed for each row with today's formulas (the ``plan_gib`` stored in a row is the plan of
its day): same model, layers, micro-batch, ZeRO stage and DeepSpeed settings, recompute and attention as
the row ran (its ``plan_settings``; rows without them are sized by their variant's name, ``RECORDED`` for
names gpu_step no longer runs), the GELU recomputed or saved as the row's layers did.
Prints measured / plan per row and the range per kind of row. No GPU needed.

    python benchmarks/plan_memory.py [gpu_step JSON ...]   (default: benchmarks/results/*/*gpu_step*.json)
    python benchmarks/plan_memory.py --fixture tests/fixtures/gpu_peaks.json   (the rows the tests check)
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gpu_variants import VARIANTS, Variant, plan_gib, plan_settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PERSIST = {"stage3_param_persistence_threshold": 10**9}
RECORDED = {  # variant names in recorded JSON that gpu_step no longer runs -> what they ran, in today's terms
    "zero3_leaf": VARIANTS["zero3"],  # the layer-sized leaf modules of today's zero3.json
    "zero3_leaf_full": VARIANTS["zero3_full"],
    "zero3_leaf_selective": VARIANTS["zero3_selective"],
    "zero3_leaf_mb2x": VARIANTS["zero3_mb2x"],
    "zero3_nogathersync": VARIANTS["zero3"],  # the one-rank fetch the engine now installs itself
    "zero3_nobias_compile_layers_nogathersync": VARIANTS["zero3_nobias_compile_layers"],
    "zero3_halves": Variant(zero_overrides={"leaf_module": {"classes": [
        "megatron.core.transformer.attention.SelfAttention", "megatron_nexa.model.layer_specs.NexaMLP",
        "megatron_nexa.model.heads.MaskedPeakHead"]}}),  # attention and MLP as separate leaves
    "zero3_persist": Variant(zero_overrides=PERSIST),  # every parameter persistent
    "zero3_mb4x_persist": Variant(batch_factor=4, zero_overrides=PERSIST),
    "zero3_mb8x_persist": Variant(batch_factor=8, zero_overrides=PERSIST),
    "zero3_mb8x": Variant(batch_factor=8),
    "zero3_gas4": Variant(accumulation=4),
    "zero3_hd64": Variant(cfg_overrides=("model.num_attention_heads=36",)),  # head size 64 at the 3B's width
}

# A run whose compiled layers saved the GELU's output although its rows say recompute_gelu: torch.compile's
# partitioner moved the recomputed GELU into the forward (fixed since; docs/decisions/0004-recomputed-gelu.md).
GELU_SAVED_BY_COMPILE = {"benchmarks/results/2026-11-27-h200-whole-7b-gelu-recompute/run1_gpu_step_3b_full.json"}


def kind(settings: dict) -> str:
    if "model.attention_backend=local" in settings["overrides"]:
        return "megatron local attention"
    if settings["recompute"] == "full":
        return "full recompute"
    return f"ZeRO-{settings['zero']['stage']}, SDPA"


def row_settings(run: dict, row: dict, name: str) -> dict | None:
    """``plan_settings`` of a recorded engine row; None for plain rows and unknown names."""
    if "plan_settings" in row:
        return row["plan_settings"]
    variant = RECORDED.get(row["variant"], VARIANTS.get(row["variant"]))
    if variant is None or not variant.engine:
        return None
    a = run["args"]
    # rows written before model.recompute_gelu existed ran layers that saved the GELU's output
    recompute_gelu = row.get("recompute_gelu", False) and name not in GELU_SAVED_BY_COMPILE
    return plan_settings(a["model"], a["layers"], a["micro_batch"], variant, recompute_gelu)


def compare(paths: list[Path]) -> list[dict]:
    """One dict per engine row with a peak measured on a GPU: where it came from, what it ran, measured and plan GiB."""
    rows = []
    for path in paths:
        run = json.loads(path.read_text())
        if not run["env"].get("cuda"):
            continue  # peaks are measured on CUDA only
        name = str(path.resolve().relative_to(REPO) if path.resolve().is_relative_to(REPO) else path)
        for r in run["rows"]:
            settings = None if r.get("peak_gib") is None else row_settings(run, r, name)
            if settings is None:
                continue
            plan = plan_gib(settings)
            rows.append({"file": name, "model": run["args"]["model"], "layers": run["args"]["layers"],
                         "variant": r["variant"], "kind": kind(settings), "micro_batch": settings["micro_batch"],
                         "settings": settings, "peak_gib": r["peak_gib"], "plan_gib": plan, "ratio": r["peak_gib"] / plan})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", nargs="*", type=Path)
    p.add_argument("--fixture", type=Path, help="also write each row's settings and measured peak here (no plan)")
    args = p.parse_args()
    paths = args.json or sorted((REPO / "benchmarks/results").glob("*/*gpu_step*.json"))
    rows = compare(paths)
    print(f"{'file':<70} {'model':<8} {'L':>3} {'variant':<40} {'mb':>4} {'peak':>7} {'plan':>7} {'peak/plan':>9}")
    for r in rows:
        print(f"{r['file']:<70} {r['model']:<8} {r['layers']:>3} {r['variant']:<40} {r['micro_batch']:>4} "
              f"{r['peak_gib']:7.2f} {r['plan_gib']:7.2f} {r['ratio']:9.3f}")
    print()
    for k in sorted({r["kind"] for r in rows}):
        ratios = [r["ratio"] for r in rows if r["kind"] == k]
        print(f"{k:<26} {len(ratios):3d} rows: measured / plan {min(ratios):.3f} - {max(ratios):.3f}")
    if args.fixture:
        keep = ("file", "variant", "kind", "settings", "peak_gib")
        about = "peaks measured on a GPU (benchmarks/results) and what each row ran; benchmarks/plan_memory.py --fixture"
        args.fixture.write_text(f'{{"about": {json.dumps(about)},\n "rows": [\n'
                                + ",\n".join("  " + json.dumps({k: r[k] for k in keep}) for r in rows) + "\n]}\n")


if __name__ == "__main__":
    main()
