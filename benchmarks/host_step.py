"""Host time of a full training step, split into a part per layer and a part per step, on this CPU.

    python benchmarks/host_step.py [--depths 4 12] [--variants amp zero2 zero3 zero3_compile_layers] [--unscaled]

At the pilot's micro-batch the GPU step's forward is bound by the host (docs/performance.md), and a 4-layer
benchmark weighs the per-step part (embeddings, heads, losses, the optimiser's and ZeRO-3's end-of-step
work) 9× more than the 36-layer model does. This times ``benchmarks/gpu_step.py``'s variants at the tiny
width, where the arithmetic is small and the time is mostly the host's, at two depths, and solves
``time = fixed + depth × per_layer`` for each. DeepSpeed's settings counted in elements are scaled to the
tiny layer, so that ZeRO-3 partitions it as it does the 3B (``at_width``). The baseline, in the same run, is
the plain-PyTorch AMP step (``amp``). Time on a shared 2-core machine moves by ±15 % from run to run, so each
variant's Python function calls per step and per layer are printed too (cProfile): they do not move. Best of
``--repeats`` × ``--steps`` steps, one thread. Last, the parameters of a layer that ZeRO-3
partitions (fetches each step) for each ZeRO-3 variant: the 3B's four weight matrices, when scaled.
"""
import argparse
import cProfile
import dataclasses
import os
import pstats
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DS_ACCELERATOR", "cpu")

from benchmarks import gpu_step, gpu_variants  # noqa: E402
from benchmarks._util import best_of  # noqa: E402
from megatron_nexa.config import load_config  # noqa: E402
from megatron_nexa.plan import layer_parameters_formula  # noqa: E402
from megatron_nexa.testing import synthetic_batch  # noqa: E402

# DeepSpeed settings counted in parameter elements: scaled with the layer's size (``at_width``).
NUMEL_KEYS = ("stage3_param_persistence_threshold", "stage3_max_live_parameters", "stage3_max_reuse_distance",
              "stage3_prefetch_bucket_size", "reduce_bucket_size", "allgather_bucket_size")


def at_width(variant: gpu_variants.Variant, cfg, width: str = "nexa_3b") -> gpu_variants.Variant:
    """``variant`` with its DeepSpeed element counts scaled by the tiny layer's size over ``width``'s, so that
    the tiny model is partitioned, kept, prefetched and bucketed as the 3B is. At DeepSpeed's own numbers every
    tiny parameter is under the persistence threshold (10^6 elements): ZeRO-3 would never gather one."""
    if not variant.engine:
        return variant
    ratio = layer_parameters_formula(cfg.model) / layer_parameters_formula(
        load_config(gpu_variants.REPO / f"configs/model/{width}.yaml").model)
    zero = gpu_variants.ds_config(variant)["zero_optimization"]
    scaled = {k: max(1, round(zero[k] * ratio)) for k in NUMEL_KEYS if k in zero}
    return dataclasses.replace(variant, zero_overrides={**variant.zero_overrides, **scaled})


def built_step(name: str, layers: int, micro_batch: int, tmp: Path, scaled: bool = True):
    """(step, close) for ``gpu_step`` variant ``name`` at the tiny width and ``layers`` layers; ``scaled``: with
    DeepSpeed's element counts scaled to the tiny width (``at_width``)."""
    variant = gpu_variants.VARIANTS[name]
    cfg = gpu_variants.variant_config("tiny", layers, micro_batch, variant)
    variant = at_width(variant, cfg) if scaled else variant
    batch = synthetic_batch(cfg, cfg.train.micro_batch_size)
    model, (fwd, bwd, upd), close, _ = gpu_step.build_variant(cfg, variant, tmp)

    def step():
        bwd(fwd(batch))
        upd()

    zero3 = variant.engine and gpu_variants.ds_config(variant)["zero_optimization"]["stage"] == 3
    return step, close, partitioned(model) if zero3 else None


def partitioned(engine) -> list[str]:
    """The first layer's parameters that ZeRO-3 keeps partitioned (not persistent), by name within the layer."""
    return sorted(n.split(".layers.0.")[1] for n, p in engine.module.named_parameters()
                  if ".layers.0." in n and not getattr(p, "ds_persist", True))


def python_calls(step, steps: int = 5) -> int:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        step()
    profiler.disable()
    return pstats.Stats(profiler).total_calls // steps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depths", type=int, nargs=2, default=[4, 12])
    p.add_argument("--variants", nargs="+", default=["amp", "zero2", "zero3", "zero3_nobias", "zero3_compile_layers"],
                   choices=sorted(gpu_variants.VARIANTS))
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--unscaled", action="store_true",
                   help="DeepSpeed's element counts as in ds_configs/ (at the tiny width: no parameter partitioned)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    shallow, deep = args.depths
    ms, calls, split = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants:
            for depth in args.depths:
                step, close, split[name] = built_step(name, depth, args.micro_batch, Path(tmp), not args.unscaled)
                for _ in range(3):  # warm-up (and compilation)
                    step()
                ms[name, depth] = best_of(lambda: [step() for _ in range(args.steps)], args.repeats) / args.steps * 1e3
                calls[name, depth] = python_calls(step)
                close()
    base = "amp" if "amp" in args.variants else None
    numbers = "as in ds_configs/" if args.unscaled else "scaled to the tiny layer (partitioned as the 3B)"
    print(f"host time of a training step (tiny width, micro-batch {args.micro_batch}, CPU, 1 thread, best of "
          f"{args.repeats} x {args.steps} steps; DeepSpeed's element counts {numbers}); fixed + per layer solved "
          f"from {shallow} and {deep} layers:")
    print(f"  {'variant':<22} {f'{shallow} layers':>10} {f'{deep} layers':>10} {'per layer':>10} {'fixed':>8} "
          f"{'fixed share at 36':>18} {'x amp at 36':>12} {'calls/layer':>12} {'calls fixed':>12}")
    at36 = {}
    for name in args.variants:
        per_layer = (ms[name, deep] - ms[name, shallow]) / (deep - shallow)
        fixed = ms[name, shallow] - shallow * per_layer
        at36[name] = fixed + 36 * per_layer
        ratio = f"{at36[name] / at36[base]:12.2f}" if base and name in at36 and base in at36 else f"{'-':>12}"
        calls_per_layer = (calls[name, deep] - calls[name, shallow]) // (deep - shallow)
        calls_fixed = calls[name, shallow] - shallow * calls_per_layer
        print(f"  {name:<22} {ms[name, shallow]:8.2f}ms {ms[name, deep]:8.2f}ms {per_layer:8.2f}ms {fixed:6.2f}ms "
              f"{fixed / at36[name]:18.0%} {ratio} {calls_per_layer:12d} {calls_fixed:12d}")
    for name in args.variants:
        if split[name] is not None:
            print(f"  {name}: ZeRO-3 partitions of each layer: {', '.join(split[name]) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
