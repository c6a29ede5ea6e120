"""Full training steps at the 3B/7B widths on one GPU: the project's DeepSpeed engine against plain AMP.

    python benchmarks/gpu_step.py --model nexa_3b --layers 4 [--micro-batch 32] [--variants amp zero3 ...]
                                  [--json out.json] [--profile zero3 amp --profile-out prof.txt]

Every variant (``benchmarks/gpu_variants.py``; ``--list-variants`` names them) builds the model at the config's width
with ``--layers`` layers and times full optimiser steps (forward, losses, backward, clipping, update) on synthetic
spectra of full length, after warm-up:
- ``amp``: the baseline, measured in the same run: the plain-PyTorch ``ReferenceEncoder`` + heads with
  fp32 weights, bf16 autocast and torch's fused AdamW (no DeepSpeed, no megatron-core);
- ``zero3`` … : the project's own path, ``engine.setup.build`` (megatron-core encoder, DeepSpeed engine)
  on ``ds_configs/<stage>.json``, with the variant's changes to the model or the DeepSpeed config;
- ``amp_encoder`` (no heads or losses) and ``amp_compile`` (torch.compile) split the baseline's time;
- ``*_gas16``, ``*_gas32``, ``*_mb2x_gas8``: the pilot's global batch (512) on one GPU as accumulated
  micro-batches (``gpu_variants.ACCUMULATED``); times are per micro-batch.
Model FLOPs per step are 3 × ``cluster_plan.forward_flops`` (the GPU issue's count; embeddings and
heads not counted). MFU is against a bf16 matmul ceiling measured in the same run (8192³) and, as a
second column, against the datasheet peak that ``nexa-plan`` assumes. Peak memory is
``torch.cuda.max_memory_allocated`` over warm-up and timed steps, above what was allocated before the
variant; for engine variants it is printed beside nexa-plan's prediction for one GPU.
"""
import argparse
import gc
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DS_ACCELERATOR", "cuda" if torch.cuda.is_available() else "cpu")

from benchmarks.gpu_variants import VARIANTS, Variant, ds_config, plan_gib, plan_settings, variant_config  # noqa: E402
from megatron_nexa.cluster_plan import GiB, Cluster, forward_flops  # noqa: E402
from megatron_nexa.testing import host_waits, synthetic_batch  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"  # CPU only for a smoke run of this script (tests/integration/test_gpu_step_smoke.py)
# DeepSpeed's ZeRO-3 (memory_efficient_linear, on by default) replaces F.linear process-wide with its own autograd
# Function, and leaves it so: a plain variant run after an engine variant would be timed on it, not on torch's.
TORCH_LINEAR = torch._C._nn.linear


def sync():
    if CUDA:
        torch.cuda.synchronize()


def time_steps(step, warmup: int, steps: int) -> float:
    """Seconds per call of ``step`` over ``steps`` calls after ``warmup`` (synchronised at both ends)."""
    for _ in range(warmup):
        step()
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - t) / steps


def matmul_ceiling(n: int = 8192) -> float:
    """bf16 TFLOP/s of an n³ matrix product on random data: the ceiling MFU is measured against."""
    a, b = (torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16) for _ in range(2))
    return 2 * n**3 / time_steps(lambda: a @ b, 3, 10) / 1e12


def phase_times(phases, repeats: int = 3) -> tuple[dict, dict]:
    """Milliseconds per phase (forward, backward, update), each started on an idle GPU and closed by a
    synchronize, and the host's share: until the phase's call returned, before that synchronize. Where the host
    bounds a phase the two are close; where the GPU does, the host's is smaller. Medians of ``repeats``."""
    times = {name: [] for name, _ in phases}
    host = {name: [] for name, _ in phases}
    for _ in range(repeats):
        state = None
        for name, fn in phases:
            sync()
            t = time.perf_counter()
            state = fn(state)
            host[name].append((time.perf_counter() - t) * 1e3)
            sync()
            times[name].append((time.perf_counter() - t) * 1e3)
    return tuple({name: sorted(v)[len(v) // 2] for name, v in d.items()} for d in (times, host))


def host_profile(fwd, after, calls: int = 3, rows: int = 35) -> str:
    """cProfile of ``calls`` forwards (``after`` runs the rest of each step, unprofiled): which Python functions
    the host spends a forward in, by own time and by cumulative time (cProfile's own cost inflates both: read
    them as shares)."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    for _ in range(calls):
        sync()
        profiler.enable()
        out = fwd()
        profiler.disable()
        after(out)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).strip_dirs()
    stats.sort_stats("tottime").print_stats(rows)
    stats.sort_stats("cumulative").print_stats(rows)
    return text.getvalue()


def release_memory() -> int:
    """Free what earlier variants left; reset the peak counter. Returns the bytes still allocated."""
    gc.collect()
    if not CUDA:
        return 0
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def ds_config_file(variant: Variant, tmp: Path) -> str:
    path = tmp / "ds.json"
    path.write_text(json.dumps(ds_config(variant)))
    return str(path)


def build_plain(cfg, variant: Variant):
    from megatron_nexa.engine.optim import param_groups
    from megatron_nexa.losses import pretraining_terms
    from megatron_nexa.model.pretraining import NexaSpecForPretraining
    from megatron_nexa.model.reference import ReferenceEncoder

    torch.manual_seed(cfg.train.seed)
    encoder = ReferenceEncoder(cfg.model)
    model = (NexaSpecForPretraining(cfg.model, encoder) if variant.heads else encoder).to(DEVICE).train()
    o = cfg.optim
    opt = torch.optim.AdamW(param_groups(model, o.weight_decay), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps,
                            fused=CUDA)
    run = torch.compile(model) if variant.compile else model

    calls = [0]  # micro-batches since the last update
    updates = [0]  # optimiser steps taken
    opt.register_step_post_hook(lambda *_: updates.__setitem__(0, updates[0] + 1))

    def forward(batch):
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            out = run(*(batch.model_inputs() if variant.heads else batch.encoder_inputs()))
            loss = pretraining_terms(batch, out, cfg.loss)["loss"] if variant.heads else out.float().square().mean()
        return loss / variant.accumulation

    def backward(loss):
        loss.backward()

    def update(_=None):  # as DeepSpeed's engine.step(): an update at each accumulation boundary only
        calls[0] += 1
        if calls[0] % variant.accumulation:
            return
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return model, (forward, backward, update), lambda: None, lambda: updates[0]


def build_engine(cfg, ds_path):
    from megatron_nexa.engine.setup import build, destroy
    from megatron_nexa.losses import pretraining_terms

    built = build(cfg, ds_path)
    engine = built.engine

    def forward(batch):
        return pretraining_terms(batch, engine(*batch.model_inputs()), built.cfg.loss)["loss"]

    def backward(loss):
        engine.backward(loss)

    def update(_=None):
        engine.step()

    def close():
        destroy(engine)

    return engine, (forward, backward, update), close, lambda: engine.global_steps


def build_variant(cfg, variant: Variant, tmp: Path):
    """(model, (forward, backward, update), close, updates) of ``variant``, on torch's own ``F.linear`` whatever an
    earlier engine variant left in its place; ``updates()``: the optimiser steps taken so far."""
    torch.nn.functional.linear = TORCH_LINEAR
    if variant.engine:
        return build_engine(cfg, ds_config_file(variant, tmp))
    return build_plain(cfg, variant)


def run_variant(name: str, variant: Variant, args, ceiling: float) -> dict:
    cfg = variant_config(args.model, args.layers, args.micro_batch, variant)
    mb, seq = cfg.train.micro_batch_size, cfg.model.max_peaks + 2
    batch = synthetic_batch(cfg, mb).to(DEVICE)
    before = release_memory()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        model, (fwd, bwd, upd), close, updates = build_variant(cfg, variant, Path(tmp))
        build_s = time.perf_counter() - t0

        try:  # an engine that fails mid-run (out of memory, say) is freed too, and any patch undone
            def step():
                bwd(fwd(batch))
                upd()

            def whole(n):  # calls in whole optimiser steps, so that every update is timed with its micro-batches
                return -(-n // variant.accumulation) * variant.accumulation

            warmup, timed = whole(args.warmup), whole(args.steps)
            for _ in range(warmup):
                step()
            before_updates = updates()
            seconds = time_steps(step, 0, timed)
            timed_updates = updates() - before_updates  # must be timed / accumulation, as the engine's
            f_linear = "torch" if torch.nn.functional.linear is TORCH_LINEAR else torch.nn.functional.linear.__module__
            peak = (torch.cuda.max_memory_allocated() - before) / GiB if CUDA else None
            waits = host_waits(step)
            phases, host_ms = phase_times([("forward", lambda _: fwd(batch)), ("backward", bwd), ("update", upd)])
            profile_out = Path(args.profile_out)  # appended: one file for every profiled variant (8 files come back)
            if name in args.host_profile:
                with profile_out.open("a") as f:
                    f.write(f"# host: {args.model} x{args.layers} layers, variant {name}, 3 forwards\n\n"
                            + host_profile(lambda: fwd(batch), lambda out: (bwd(out), upd())) + "\n")
            if name in args.profile:
                from torch.profiler import ProfilerActivity, profile

                stack = args.profile_stack > 0
                with profile(activities=[ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * CUDA,
                             with_stack=stack, record_shapes=stack) as prof:
                    for _ in range(3):
                        step()
                    sync()
                device_time = "self_cuda_time_total" if CUDA else "self_cpu_time_total"
                table = prof.key_averages()
                by_device = table.table(sort_by=device_time, row_limit=40)
                with profile_out.open("a") as f:
                    f.write(f"# {args.model} x{args.layers} layers, variant {name}, 3 steps\n\n{by_device}\n\n"
                            + table.table(sort_by="cpu_time_total", row_limit=40) + "\n\n")
                    if stack:  # where the device time is spent: by calling Python lines, then by input shapes
                        f.write(prof.key_averages(group_by_stack_n=args.profile_stack).table(
                            sort_by=device_time, row_limit=30, max_src_column_width=120) + "\n\n")
                        f.write(prof.key_averages(group_by_input_shape=True).table(
                            sort_by=device_time, row_limit=30, max_shapes_column_width=120) + "\n\n")
                if stack:  # the whole timeline, kernels linked to the Python lines that launched them
                    trace = profile_out.with_name(f"{profile_out.stem}_{name}.trace.json")
                    prof.export_chrome_trace(str(trace))
                    with trace.open("rb") as src, gzip.open(f"{trace}.gz", "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    trace.unlink()
        finally:
            close()
        del model, fwd, bwd, upd, close, updates
    leftover = release_memory() - before
    tflops = 3 * forward_flops(cfg.model, mb, seq) / seconds / 1e12
    settings = plan_settings(args.model, args.layers, args.micro_batch, variant, cfg.model.recompute_gelu)
    return {"variant": name, "note": variant.note, "micro_batch": mb, "accumulation": variant.accumulation,
            "seq": seq, "layers": args.layers, "recompute_gelu": cfg.model.recompute_gelu,
            "step_ms": seconds * 1e3, "tflops": tflops, "mfu": tflops / ceiling,
            "mfu_datasheet": tflops / args.datasheet_tflops, "peak_gib": peak,
            "plan_gib": plan_gib(settings) if settings else None, "plan_settings": settings,
            "timed_calls": timed, "timed_updates": timed_updates, "phases_ms": phases, "host_ms": host_ms,
            "build_s": build_s, "leftover_gib": leftover / GiB, "host_waits": waits, "f_linear": f_linear}


def environment() -> dict:
    import deepspeed
    import megatron.core

    return {"device": torch.cuda.get_device_name() if CUDA else "CPU", "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "deepspeed": deepspeed.__version__, "megatron_core": megatron.core.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def render(rows: list[dict], args, ceiling: float, env: dict) -> str:
    base = next((r for r in rows if r["variant"] == "amp"), None)
    w = max([16] + [len(r["variant"]) for r in rows])
    lines = [f"{args.model} width, {args.layers} layers, {env['device']}, torch {env['torch']}, deepspeed "
             f"{env['deepspeed']}, megatron-core {env['megatron_core']}; bf16 matmul ceiling {ceiling:.0f} TFLOP/s",
             f"{'variant':<{w}} {'mb':>3} {'gas':>3} {'step ms':>8} {'TFLOP/s':>8} {'MFU':>6} {'MFU/ds':>6} {'x amp':>6} "
             f"{'fwd':>6} {'fwd@h':>6} {'bwd':>6} {'upd':>6} {'peak GiB':>8} {'plan GiB':>8} {'waits':>5}"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['variant']:<{w}} failed: {r['error']}")
            continue
        ratio = (base["tflops"] / r["tflops"]) if base else float("nan")
        p = r["phases_ms"]
        plan_col, peak_col = (f"{r[k]:8.1f}" if r[k] is not None else f"{'-':>8}" for k in ("plan_gib", "peak_gib"))
        waits_col = f"{sum(r['host_waits'].values()):5d}" if r.get("host_waits") is not None else f"{'-':>5}"
        fwd_host = r.get("host_ms", {}).get("forward", float("nan"))
        lines.append(f"{r['variant']:<{w}} {r['micro_batch']:>3} {r.get('accumulation', 1):>3} {r['step_ms']:8.1f} {r['tflops']:8.0f} "
                     f"{r['mfu']:6.1%} {r['mfu_datasheet']:6.1%} {ratio:6.2f} {p['forward']:6.1f} {fwd_host:6.1f} "
                     f"{p['backward']:6.1f} {p['update']:6.1f} {peak_col} {plan_col} {waits_col}")
    lines.append("gas: micro-batches per update; step ms, TFLOP/s and MFU are per micro-batch, the update's share "
                 "included, and upd is that of a micro-batch between updates (none) when gas > 1. "
                 "fwd@h: the host's share of fwd (until the forward's call returned; near fwd where the host "
                 "bounds the forward). x amp: time per model FLOP relative to the AMP baseline (1.00 = as fast; >1 slower). "
                 f"MFU/ds: against the {args.datasheet_tflops:.0f} TFLOP/s datasheet peak nexa-plan assumes. "
                 "waits: synchronising CUDA calls torch saw in one step (at least that many; where: the JSON).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="nexa_3b", help="configs/model/<name>.yaml gives the width")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--micro-batch", type=int, default=32)
    p.add_argument("--variants", nargs="+", default=["amp", "zero3", "zero3_full", "zero3_selective"],
                   choices=sorted(VARIANTS))
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--datasheet-tflops", type=float, default=Cluster().peak_tflops)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--profile", nargs="*", default=[], choices=sorted(VARIANTS),
                   help="profile 3 steps of these variants (tables appended to --profile-out)")
    p.add_argument("--host-profile", nargs="*", default=[], choices=sorted(VARIANTS),
                   help="cProfile 3 forwards of these variants on the host (tables appended to --profile-out)")
    p.add_argument("--profile-out", default="gpu_step_profile.txt")
    p.add_argument("--profile-stack", type=int, default=0,
                   help="N > 0: also group the profile by the N innermost Python frames and by input shapes")
    p.add_argument("--matmul-size", type=int, default=8192, help="n of the n³ ceiling product")
    p.add_argument("--list-variants", action="store_true", help="print every variant's name and note, and exit")
    args = p.parse_args(argv)
    if args.list_variants:
        for name, variant in VARIANTS.items():
            print(f"{name}\t{variant.note}")
        return 0
    if not CUDA:
        print("gpu_step: no CUDA GPU: a smoke run on CPU, its numbers mean nothing (CPU throughput: "
              "benchmarks/train_step.py)", file=sys.stderr)
    env = environment()
    ceiling = matmul_ceiling(args.matmul_size)
    if args.profile or args.host_profile:
        Path(args.profile_out).write_text("")  # variants append to it
    rows = []
    for name in args.variants:
        try:
            rows.append(run_variant(name, VARIANTS[name], args, ceiling))
        except Exception as e:  # one failing variant (e.g. out of memory) must not hide the others
            traceback.print_exc()
            rows.append({"variant": name, "error": f"{type(e).__name__}: {str(e)[:300]}"})
            release_memory()
        print(json.dumps(rows[-1]), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"env": env, "args": vars(args), "ceiling_tflops": ceiling,
                                                   "rows": rows}, indent=1))
    print(render(rows, args, ceiling, env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
