"""Predicted against measured step time on N CPU ranks (gloo), ZeRO-1/2/3, with everything the prediction needs
measured in the same run.

    python benchmarks/comm_step.py [--ranks 2] [--config configs/massbank_small.yaml] [--micro-batch 4]
                                   [--accum 1] [--steps 4] [--out results.json]

It starts itself under torchrun. Each rank then measures:
- the gloo bus bandwidth: all-gather, reduce-scatter and all-reduce of 16 MB, timed; the bandwidth used is their
  median, as nccl-tests defines bus bandwidth;
- the compute: forward + backward of one micro-batch on the plain model, every rank at once (as in training);
- the update: AdamW's step over the whole model, on one rank.
Then for each ZeRO stage (fp32: ``zero1``/``zero2`` without bf16, ``zero3_cpu``) the real DeepSpeed engine runs
``--steps`` steps after two warm-up steps; the median is the measured step. The prediction is
``step_time`` on the communication plan's bytes with those measurements, as ``nexa-plan`` predicts a cluster.
On a CPU the collectives and the compute share the cores, so the "likely" overlap is optimistic here: the table
shows by how much.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DS_ACCELERATOR", "cpu")


def bus_bandwidth_gbs(dist, torch) -> float:
    n, numel = dist.get_world_size(), 4 * 2**20  # 16 MB of fp32
    results = []
    for op in ("all_gather", "reduce_scatter", "all_reduce"):
        shard, full = torch.ones(numel // n), torch.ones(numel)
        call = {"all_gather": lambda: dist.all_gather_into_tensor(full, shard),
                "reduce_scatter": lambda: dist.reduce_scatter_tensor(shard, full),
                "all_reduce": lambda: dist.all_reduce(full)}[op]
        call()
        dist.barrier()
        t = time.perf_counter()
        for _ in range(3):
            call()
        seconds = (time.perf_counter() - t) / 3
        factor = 2 * (n - 1) / n if op == "all_reduce" else (n - 1) / n
        results.append(numel * 4 * factor / seconds / 1e9)
    return sorted(results)[1]


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def rank_main(args) -> None:
    import torch
    import torch.distributed as dist

    from megatron_nexa.comm_plan import CommSettings, comm_volume, inventory
    from megatron_nexa.config import load_config
    from megatron_nexa.engine.setup import build, init_distributed
    from megatron_nexa.losses import pretraining_terms
    from megatron_nexa.model.pretraining import NexaSpecForPretraining
    from megatron_nexa.model.reference import ReferenceEncoder
    from megatron_nexa.model.weight_decay import param_groups
    from megatron_nexa.step_time import Compute, step_time
    from megatron_nexa.testing import engine_step, synthetic_batch

    torch.set_num_threads(1)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    overrides = [f"--train.micro_batch_size={args.micro_batch}",
                 f"--train.global_batch_size={args.micro_batch * world * args.accum}", "--data.sources=[{path: unused}]"]
    cfg = load_config(REPO / args.config, overrides)
    init_distributed(cfg.train.seed)
    bus = bus_bandwidth_gbs(dist, torch)
    plain = NexaSpecForPretraining(cfg.model, ReferenceEncoder(cfg.model))
    batch = synthetic_batch(cfg, args.micro_batch, seed=rank)

    def forward_backward():
        pretraining_terms(batch, plain(*batch.model_inputs()), cfg.loss)["loss"].backward()

    forward_backward()
    dist.barrier()
    micro_ms = median_time(forward_backward, 5) * 1e3
    adam = torch.optim.AdamW(param_groups(plain, cfg.optim.weight_decay))
    adam.step()
    update_ms = median_time(adam.step, 5) * 1e3
    params = sum(p.numel() for p in plain.parameters())
    compute = Compute(args.micro_batch, micro_ms, update_ms / (params / 1e9), 0.0, "measured in this run")
    del plain, adam
    inv = inventory(cfg.model, cfg.optim.weight_decay)
    rows = []
    for name in ("zero1", "zero2", "zero3_cpu"):
        ds = json.loads((REPO / "ds_configs" / f"{name}.json").read_text())
        ds.pop("bf16", None)  # fp32, as the compute was measured
        path = Path(args.work) / f"{name}_rank{rank}.json"
        path.write_text(json.dumps(ds))
        built = build(cfg, str(path))

        def step():
            for micro in range(args.accum):
                engine_step(built, synthetic_batch(cfg, args.micro_batch, seed=100 * rank + micro))

        for _ in range(2):
            step()
        dist.barrier()
        measured = median_time(step, args.steps)
        settings = CommSettings.from_ds_config(ds)
        zero = ds["zero_optimization"]
        volume = comm_volume(inv, settings, world, args.accum)
        t = step_time(volume, settings, inv, compute, args.micro_batch, args.accum, bus,
                      prefetch=zero.get("stage3_prefetch_bucket_size", 1) != 0,
                      overlap_comm=zero.get("overlap_comm", settings.stage == 3))
        rows.append({"config": name, "stage": settings.stage, "wire_mb": sum(volume.wire_bytes().values()) / 1e6,
                     "compute_s": t.compute_s, "comm_s": sum(t.comm_s.values()), "predicted_low_s": t.low_s,
                     "predicted_likely_s": t.likely_s, "predicted_high_s": t.high_s, "measured_s": measured})
        built.engine.destroy()
    if rank == 0:
        result = {"ranks": world, "config": args.config, "micro_batch": args.micro_batch, "accum": args.accum,
                  "parameters": params, "bus_gbs": bus, "micro_ms": micro_ms, "update_ms": update_ms, "rows": rows,
                  "torch": torch.__version__}
        Path(args.work, "result.json").write_text(json.dumps(result, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--config", default="configs/massbank_small.yaml")
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--out", help="write the result JSON here too")
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args()
    if "RANK" in os.environ:
        return rank_main(args)
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.ranks),
               "--master_addr", "127.0.0.1", "--master_port", "29790", __file__, "--work", work,
               "--ranks", str(args.ranks), "--config", args.config, "--micro-batch", str(args.micro_batch),
               "--accum", str(args.accum), "--steps", str(args.steps)]
        subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
        result = json.loads(Path(work, "result.json").read_text())
    print(f"{result['ranks']} CPU ranks (gloo), {result['config']}, {result['parameters']:,} parameters, micro-batch "
          f"{result['micro_batch']} x {result['accum']}; measured here: bus bandwidth {result['bus_gbs']:.2f} GB/s, "
          f"forward+backward {result['micro_ms']:.1f} ms, update {result['update_ms']:.1f} ms")
    print("config       wire MB  compute s  comm s   predicted: full overlap .. none (likely)   measured s  "
          "measured/likely")
    for r in result["rows"]:
        print(f"{r['config']:10s} {r['wire_mb']:9.1f} {r['compute_s']:9.3f} {r['comm_s']:7.3f}   {r['predicted_low_s']:8.3f} .. "
              f"{r['predicted_high_s']:.3f} ({r['predicted_likely_s']:.3f})   {r['measured_s']:10.3f}  "
              f"{r['measured_s'] / r['predicted_likely_s']:10.2f}")
    if max(r["measured_s"] / r["predicted_likely_s"] for r in result["rows"]) > 3:
        print("note: DeepSpeed's own host work, which the model does not count on a CPU, dominates at this size; "
              "the comparison means something from `small` up")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
