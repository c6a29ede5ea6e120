"""``nexa-preflight``: check on the allocation, before training, that the run can start and run (one line per check).

    nexa-preflight --config configs/pretrain_7b.yaml --ds_config zero3.json --world-size 16 [--section.key=value]

Each line is PASS, FAIL, WARN or SKIP with what to do; the exit status is 1 on any FAIL, 2 on a usage error.
Under srun every task runs it: the host checks (config, data, directories, disk, versions) on each node's local rank
0, the GPU checks (devices, memory against the plan, NCCL bandwidth) on every rank. ``--offline``, ``--skip-gpu``
or no GPU: the GPU checks say SKIP. The checks are listed in docs/scaling.md (Preflight).
"""
import argparse
import os
import socket
import sys
from datetime import timedelta
from pathlib import Path

from megatron_nexa import preflight as pf


def _int_env(*names: str) -> int | None:
    for name in names:
        value = os.environ.get(name, "").split("(")[0]  # SLURM_TASKS_PER_NODE-style "8(x2)"
        if value.strip().isdigit():
            return int(value)
    return None


def _layout(args) -> pf.Layout:
    world = args.world_size or _int_env("WORLD_SIZE", "SLURM_NTASKS") or 1
    nodes = args.nodes or _int_env("SLURM_NNODES", "SLURM_JOB_NUM_NODES") or 1
    return pf.Layout(world_size=world, nodes=nodes)


def host_checks(args, overrides: list[str], layout: pf.Layout, free_bytes=pf.free_bytes_at) -> list[pf.Check]:
    cfg, ds, failed = pf.load(args.config, args.ds_config, overrides)
    checks = [failed] if failed else [pf.check_config(cfg, ds, layout, source=args.ds_config)]
    if cfg is None:
        checks.append(pf.Check(pf.SKIP, "data, directories, disk", "the config did not load"))
    else:
        checks += pf.check_sources(cfg, full=args.full, sample=args.sample)
        checks += pf.check_bucket(cfg, args.bucket)
        run_dir = Path(cfg.train.run_dir)
        dirs = {"run": run_dir, "checkpoints": run_dir / "checkpoints"}
        if args.log_dir:
            dirs["logs"] = Path(args.log_dir)
        checks += pf.check_writable(dirs)
        checks.append(pf.check_disk(cfg, ds, free_bytes) if ds is not None
                      else pf.Check(pf.SKIP, "disk", "the DeepSpeed config did not load"))
    checks += pf.check_versions()
    checks.append(pf.check_cuda())
    return checks


def gpu_checks(args, overrides: list[str], layout: pf.Layout, local_rank: int) -> list[pf.Check]:
    import torch

    if args.offline or args.skip_gpu:
        return [pf.Check(pf.SKIP, "gpu", f"{'--offline' if args.offline else '--skip-gpu'}: GPU checks skipped")]
    if not torch.cuda.is_available():
        return [pf.Check(pf.SKIP, "gpu", "no GPU here: device, memory and NCCL checks skipped")]
    cfg, ds, failed = pf.load(args.config, args.ds_config, overrides)
    checks = pf.check_gpus(cfg, ds, layout, local_rank) if failed is None else [
        pf.Check(pf.SKIP, "gpus", "the config did not load")]
    if layout.world_size < 2:
        return checks + [pf.Check(pf.SKIP, "nccl", "one rank: no collective to measure")]
    if not os.environ.get("MASTER_ADDR") or "RANK" not in os.environ:
        return checks + [pf.Check(pf.SKIP, "nccl", "no process group (RANK, MASTER_ADDR unset): run every task "
                                  "under srun to measure the fabric")]
    import torch.distributed as dist

    torch.cuda.set_device(local_rank)
    os.environ["MASTER_PORT"] = os.environ.get("NEXA_PREFLIGHT_PORT", os.environ.get("MASTER_PORT", "29500"))
    try:
        dist.init_process_group("nccl", timeout=timedelta(seconds=args.timeout))
        return checks + pf.check_collectives(layout, args.expect_intra_gbps, args.expect_inter_gbps)
    except (RuntimeError, ValueError) as e:
        return checks + [pf.Check(pf.FAIL, "nccl", f"no process group across {layout.world_size} ranks: {e}; "
                                  "check MASTER_ADDR/NEXA_PREFLIGHT_PORT, NCCL_SOCKET_IFNAME and the fabric")]
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def main(argv: list[str] | None = None, free_bytes=pf.free_bytes_at) -> int:
    p = argparse.ArgumentParser(prog="nexa-preflight", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="run config YAML")
    p.add_argument("--ds_config", required=True, help="DeepSpeed JSON (a path, or a shipped name: zero3.json)")
    p.add_argument("--world-size", type=int, default=None, help="ranks of the run (default WORLD_SIZE, SLURM_NTASKS, 1)")
    p.add_argument("--nodes", type=int, default=None, help="nodes of the run (default SLURM_NNODES, 1)")
    p.add_argument("--offline", action="store_true", help="no GPU checks (a login node, CI)")
    p.add_argument("--skip-gpu", action="store_true", help="no GPU checks")
    p.add_argument("--full", action="store_true", help="sha256 of every shard, not a sample")
    p.add_argument("--sample", type=int, default=2, help="shards a split whose sha256 the quick verify checks")
    p.add_argument("--bucket", action="append", default=[], help="a bucket path (s3://…) that must be reachable")
    p.add_argument("--log-dir", default=None, help="a log directory that must be writable")
    p.add_argument("--expect-intra-gbps", type=float, default=float(os.environ.get(
        "NEXA_EXPECT_INTRA_GBPS", pf.EXPECT_INTRA_GBPS)), help="bus bandwidth expected within a node (GB/s)")
    p.add_argument("--expect-inter-gbps", type=float, default=float(os.environ.get("NEXA_EXPECT_INTER_GBPS", 0)) or None,
                   help="bus bandwidth expected of a ring across nodes (GB/s; default: one NDR 400 NIC a GPU, "
                        "320 at 8 GPUs a node)")
    p.add_argument("--timeout", type=int, default=120, help="seconds to form the process group")
    args, overrides = p.parse_known_args(argv)
    if args.world_size is not None and args.world_size < 1:
        p.error("--world-size must be >= 1")
    layout = _layout(args)
    local_rank = _int_env("LOCAL_RANK", "SLURM_LOCALID") or 0
    prefix = f"[{socket.gethostname()} rank {os.environ['RANK']}] " if "RANK" in os.environ and layout.world_size > 1 else ""
    # the GPU checks first: every rank meets the others in the process group at once, not after its node's host checks
    gpu = gpu_checks(args, overrides, layout, local_rank)
    checks = (host_checks(args, overrides, layout, free_bytes) if local_rank == 0 else []) + gpu
    for c in checks:
        print(prefix + c.line(), flush=True)
    failed = sum(c.status == pf.FAIL for c in checks)
    warned = sum(c.status == pf.WARN for c in checks)
    print(prefix + (f"preflight: {failed} FAIL, {warned} WARN" if failed else f"preflight: ok ({warned} WARN)"),
          flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
