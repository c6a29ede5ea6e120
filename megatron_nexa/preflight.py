"""Preflight: what a run needs, checked on the allocation in under a minute, before the training step starts.

Each check is a small function returning ``Check(status, name, message)``; ``status`` is PASS, FAIL, WARN or SKIP
and a FAIL's message says what to do. ``nexa-preflight`` (``cli/preflight.py``) prints one line per check and
exits non-zero on any FAIL; ``slurm/nexa.sbatch`` runs it before the training ``srun`` (docs/scaling.md, Preflight).

- ``check_config``: the run config and the DeepSpeed JSON load and reconcile at the world size (batch sizes,
  clipping: ``engine.ds_config.reconcile``);
- ``check_sources``: every dataset version exists, its manifest parses and holds the run's splits, and a quick verify
  passes (every file's size, the sha256 of a sample of shards; ``full``: ``data.manifest.verify``, every checksum);
- ``check_bucket``: each bucket path (a remote data source, ``--bucket``) is reachable;
- ``check_writable``: run and checkpoint directories (and the log directory) take a file;
- ``check_disk``: free space for ``keep_last + 1`` checkpoints (sized from the parameter count, the ZeRO stage and
  the precision) plus logs, less the checkpoints already there; ``free_bytes`` is injectable;
- ``check_versions``: torch / deepspeed / megatron-core inside the range each compat seam supports (read from the
  seam's source, so a version outside it is reported rather than raised at import); ``check_cuda``: CUDA and NCCL;
- with GPUs: ``check_gpus`` (device count and memory per rank against ``cluster_plan.plan``) and
  ``check_collectives`` (an NCCL all-reduce and all-gather across all ranks, bus bandwidth beside the fabric's
  expected value, intra-node and inter-node: InfiniBand fallen back to TCP is a FAIL).
"""
import ast
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable, NamedTuple

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from megatron_nexa.compat import ALLOW_UNTESTED
from megatron_nexa.config import ConfigError, RunConfig, load_config
from megatron_nexa.step_time import LINKS, across_nodes_gbs

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"
GiB = 2**30
LOG_BYTES = 1 * GiB  # metrics, per-rank logs, offline wandb: an allowance beside the checkpoints
COMPAT = Path(__file__).resolve().parent / "compat"
CHECKED_PACKAGES = {"torch": "torch.py", "deepspeed": "deepspeed.py", "megatron-core": "megatron.py"}
# Bus bandwidth (GB/s) expected of a fabric; measured below FAIL_FRACTION of it is a FAIL, below WARN_FRACTION a WARN.
# The defaults are nexa-plan's link table: NVLink 4 within a node; between nodes, one NDR 400 HCA per GPU, which a
# ring uses all of (8 GPUs: 320 GB/s). TCP over Ethernet reads a few GB/s.
EXPECT_INTRA_GBPS = LINKS["nvlink4"].bus_gbs  # nexa-plan's link table, so the plan and the check agree


def expect_inter_gbps(gpus_per_node: int) -> float:
    """A ring across nodes with one NDR 400 NIC a GPU, as nexa-plan predicts it."""
    return across_nodes_gbs(LINKS["ndr400"], LINKS["nvlink4"], gpus_per_node)
FAIL_FRACTION, WARN_FRACTION = 0.5, 0.8


class Check(NamedTuple):
    status: str
    name: str
    message: str

    def line(self) -> str:
        return f"{self.status} {self.name}: {self.message}"


@dataclass
class Layout:
    """The allocation: ranks in all, on how many nodes."""
    world_size: int = 1
    nodes: int = 1

    @property
    def per_node(self) -> int:
        return max(1, self.world_size // max(1, self.nodes))


def load(config: str, ds_config: str, overrides: list[str]) -> tuple[RunConfig | None, dict | None, Check | None]:
    """The run config and DeepSpeed dict, or the FAIL saying why they do not load."""
    from megatron_nexa.engine.ds_config import load_ds_config
    try:
        cfg = load_config(config, overrides)
    except ConfigError as e:
        return None, None, Check(FAIL, "config", f"{e} (fix the YAML or the --section.key=value override)")
    try:
        ds = load_ds_config(ds_config)
    except ConfigError as e:
        return cfg, None, Check(FAIL, "config", str(e))
    return cfg, ds, None


def check_config(cfg: RunConfig, ds: dict, layout: Layout, source: str = "ds_config") -> Check:
    from megatron_nexa.engine.ds_config import bf16_enabled, reconcile, zero_stage
    if layout.world_size % layout.nodes:
        return Check(FAIL, "config", f"world size {layout.world_size} is not a whole number of ranks on each of "
                     f"{layout.nodes} nodes: give every node the same number of tasks")
    try:
        filled, cfg = reconcile(ds, cfg, layout.world_size, source=source)
    except ConfigError as e:
        return Check(FAIL, "config", str(e))
    return Check(PASS, "config", f"global batch {filled['train_batch_size']} = micro-batch "
                 f"{filled['train_micro_batch_size_per_gpu']} x {layout.world_size} rank(s) x accumulation "
                 f"{filled['gradient_accumulation_steps']}; ZeRO-{zero_stage(filled)}, "
                 f"{'bf16' if bf16_enabled(filled) else 'fp32'}, {layout.nodes} node(s) x {layout.per_node}")


def quick_verify(root: str, sample: int = 2, seed: int = 0) -> list[str]:
    """Every file's size against the manifest, and the sha256 of ``sample`` shards a split (chosen by ``seed``)
    and of the rejects file; the problems, as ``data.manifest.verify`` words them."""
    import fsspec

    from megatron_nexa.data.manifest import Manifest, sha256_file

    m = Manifest.load(root)
    fs, base = fsspec.core.url_to_fs(root)
    base = base.rstrip("/")
    problems, rng = [], random.Random(seed)
    files = [(m.rejects["file"], m.rejects, True)]
    for split, shards in m.shards.items():
        hashed = set(rng.sample(range(len(shards)), min(sample, len(shards))))
        files += [(f"shards/{split}/{s['name']}{suffix}", meta, i in hashed)
                  for i, s in enumerate(shards) for suffix, meta in s["files"].items()]
    for rel, expected, hash_it in files:
        path = f"{base}/{rel}"
        if not fs.exists(path):
            problems.append(f"{rel}: missing")
            continue
        size = fs.size(path)
        if size == expected["bytes"] and hash_it:
            size, digest = sha256_file(fs, path)
            if digest != expected["sha256"]:
                problems.append(f"{rel}: sha256 {digest[:12]}…, manifest says {expected['sha256'][:12]}…")
        if size != expected["bytes"]:
            problems.append(f"{rel}: {size} bytes, manifest says {expected['bytes']} bytes")
    return problems


def check_sources(cfg: RunConfig, full: bool = False, sample: int = 2) -> list[Check]:
    """One line per data source: exists, manifest parses, has the run's splits, quick (or ``full``) verify."""
    from megatron_nexa.data.manifest import MissingSplit, load_with_splits, verify

    if not cfg.data.sources:
        return [Check(FAIL, "data", "data.sources is empty: name at least one dataset version directory")]
    checks = []
    for i, source in enumerate(cfg.data.sources):
        name = f"data.sources[{i}]"
        try:
            m = load_with_splits(source.path, (cfg.data.train_split, cfg.data.valid_split))
        except FileNotFoundError as e:
            checks.append(Check(FAIL, name, f"{e}; fetch it with `nexa-dataset sync SRC {source.path}` or fix "
                                f"data.sources[{i}].path"))
            continue
        except MissingSplit as e:
            checks.append(Check(FAIL, name, f"{e}: set data.train_split / data.valid_split"))
            continue
        except (OSError, ValueError) as e:
            checks.append(Check(FAIL, name, f"{e}; sync the version again (`nexa-dataset sync`)"))
            continue
        try:
            problems = verify(source.path) if full else quick_verify(source.path, sample)
        except (OSError, ValueError, KeyError) as e:
            problems = [str(e)]
        how = "every checksum" if full else f"every size, sha256 of {sample} shard(s) a split (--full: all)"
        if problems:
            shown = "; ".join(problems[:3]) + (f"; … {len(problems) - 3} more" if len(problems) > 3 else "")
            checks.append(Check(FAIL, name, f"{source.path}: {len(problems)} problem(s): {shown}. Run "
                                f"`nexa-dataset verify {source.path}` and sync the version again"))
        else:
            checks.append(Check(PASS, name, f"{source.path}: {m.name} v{m.version}, "
                                f"{m.counts.get('written', 0):,} spectra; {how} match the manifest"))
    return checks


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def check_bucket(cfg: RunConfig | None, buckets: list[str] = ()) -> list[Check]:
    """Each bucket path (a remote data source, or one named with ``--bucket``) answers a listing."""
    paths = list(buckets) + ([s.path for s in cfg.data.sources if is_remote(s.path)] if cfg else [])
    if not paths:
        return [Check(SKIP, "bucket", "no bucket path (the data sources are local; --bucket URL checks one)")]
    import fsspec
    checks = []
    for path in paths:
        try:
            fs, p = fsspec.core.url_to_fs(path)
            if not fs.exists(p):
                checks.append(Check(FAIL, "bucket", f"{path}: not found (check the name and the credentials)"))
                continue
        except ImportError as e:
            checks.append(Check(FAIL, "bucket", f"{path}: {e} (pip install 'megatron_nexa[s3]')"))
            continue
        except Exception as e:  # noqa: BLE001 - any backend's network or credential error is the answer
            checks.append(Check(FAIL, "bucket", f"{path}: unreachable ({type(e).__name__}: {e}); check the "
                                "endpoint (AWS_ENDPOINT_URL), the credentials and the network"))
            continue
        checks.append(Check(PASS, "bucket", f"{path}: reachable"))
    return checks


def check_writable(dirs: dict[str, Path]) -> list[Check]:
    """Each directory is created if missing and takes a file (written and removed), as the run will need."""
    checks = []
    for name, d in dirs.items():
        try:
            Path(d).mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=d, prefix=".preflight_"):
                pass
        except OSError as e:
            checks.append(Check(FAIL, f"writable {name}", f"{d}: {e.strerror or e}; point it at a writable "
                                "filesystem or fix its permissions"))
            continue
        checks.append(Check(PASS, f"writable {name}", str(d)))
    return checks


def checkpoint_bytes(parameters: int, stage: int, bf16: bool) -> int:
    """One DeepSpeed checkpoint of the whole model, all ranks' files together: the parameters (bf16 2 B, fp32 4 B
    each) and Adam's two fp32 moments (8 B), and under ZeRO or bf16 the fp32 master copy (4 B)."""
    master = 4 if (bf16 or stage >= 1) else 0
    return parameters * ((2 if bf16 else 4) + 8 + master)


def _size(nbytes: float) -> str:
    return f"{nbytes / GiB:,.1f} GiB" if nbytes >= GiB / 10 else f"{nbytes / 2**20:,.1f} MiB"


def free_bytes_at(path: Path) -> int:
    """Free bytes on the filesystem of ``path`` (its nearest existing ancestor)."""
    p = Path(path).absolute()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def complete_checkpoints(run_dir: Path) -> int:
    return sum(1 for p in (Path(run_dir) / "checkpoints").glob("step_*") if (p / "COMPLETE").exists())


def check_disk(cfg: RunConfig, ds: dict, free_bytes: Callable[[Path], int] = free_bytes_at) -> Check:
    from megatron_nexa.engine.ds_config import bf16_enabled, zero_stage
    from megatron_nexa.plan import count_parameters

    n = count_parameters(cfg.model).total
    stage, bf16 = zero_stage(ds), bf16_enabled(ds)
    one = checkpoint_bytes(n, stage, bf16)
    run_dir = Path(cfg.train.run_dir)
    there = complete_checkpoints(run_dir)
    count = max(0, cfg.train.keep_last + 1 - there)
    need = count * one + LOG_BYTES
    free = free_bytes(run_dir)
    what = (f"{_size(free)} free at {run_dir}; {count} more checkpoint(s) (keep_last {cfg.train.keep_last} "
            f"+ 1 being written, {there} already there) x {_size(one)} ({n:,} parameters, ZeRO-{stage}, "
            f"{'bf16' if bf16 else 'fp32'}) + {_size(LOG_BYTES)} logs = {_size(need)}")
    if free < need:
        return Check(FAIL, "disk", f"{what}: free {_size(need - free)} more, lower train.keep_last, "
                     "or move train.run_dir")
    return Check(PASS, "disk", what)


def supported_ranges() -> dict[str, str]:
    """Each compat seam's ``SUPPORTED``, read from its source: importing the seam raises outside the range."""
    ranges = {}
    for package, file in CHECKED_PACKAGES.items():
        for node in ast.parse((COMPAT / file).read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "SUPPORTED" for t in node.targets):
                ranges[package] = ast.literal_eval(node.value)
    return ranges


def check_versions(installed: Callable[[str], str] = version) -> list[Check]:
    checks = []
    for package, spec in supported_ranges().items():
        try:
            found = installed(package)
        except PackageNotFoundError:
            checks.append(Check(FAIL, package, f"not installed; install {package}{spec}"))
            continue
        if SpecifierSet(spec).contains(Version(found), prereleases=True):
            checks.append(Check(PASS, package, f"{found} (supported {spec})"))
        elif os.environ.get(ALLOW_UNTESTED) == "1":
            checks.append(Check(WARN, package, f"{found} is outside {spec}; {ALLOW_UNTESTED}=1 lets it run untested"))
        else:
            checks.append(Check(FAIL, package, f"{found} is outside the supported {spec}: install {package}{spec} "
                                f"(or set {ALLOW_UNTESTED}=1 to try it)"))
    return checks


def check_cuda() -> Check:
    import torch
    if not torch.version.cuda:
        return Check(SKIP, "cuda", f"torch {torch.__version__} is a CPU build: no CUDA, no NCCL")
    nccl = "?"
    try:
        nccl = ".".join(map(str, torch.cuda.nccl.version()))
    except (RuntimeError, AttributeError):
        pass
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return Check(PASS, "cuda", f"CUDA {torch.version.cuda}, NCCL {nccl}, {gpus} GPU(s) visible")


def check_gpus(cfg: RunConfig, ds: dict, layout: Layout, local_rank: int = 0) -> list[Check]:
    """This node has a GPU for each of its ranks, and this rank's GPU holds the plan's peak at the ZeRO stage."""
    import torch

    from megatron_nexa.cluster_plan import Cluster, ZeroSettings, default_zero, plan
    from megatron_nexa.engine.ds_config import reconcile, zero_stage

    count = torch.cuda.device_count()
    if count < layout.per_node or local_rank >= count:
        return [Check(FAIL, "gpus", f"{count} GPU(s) visible, {layout.per_node} rank(s) a node (local rank "
                      f"{local_rank}): ask Slurm for --gpus-per-node={layout.per_node} or fewer tasks a node")]
    checks = [Check(PASS, "gpus", f"{count} GPU(s) on this node for {layout.per_node} rank(s)")]
    try:
        filled, cfg = reconcile(ds, cfg, layout.world_size)
    except ConfigError:
        return checks + [Check(SKIP, "gpu memory", "the config does not reconcile (see config)")]
    props = torch.cuda.get_device_properties(local_rank)
    gib = props.total_memory / GiB
    stage = zero_stage(filled)
    zero = {**default_zero(), **({stage: ZeroSettings.from_section(filled["zero_optimization"])} if stage else {})}
    cluster = Cluster(gpus_per_node=layout.per_node, nodes=layout.nodes, micro_batch=cfg.train.micro_batch_size,
                      grad_accum=filled["gradient_accumulation_steps"], gpu_memory_gib=gib,
                      recompute=cfg.model.recompute, masked_fraction=cfg.masking.ratio_max, zero=zero)
    m = plan(cfg.model, cluster)["memory_gib"][max(stage, 1)]
    what = f"{props.name} {gib:.1f} GiB; the plan's peak at ZeRO-{max(stage, 1)} is {m['total']:.1f} GiB a rank"
    if not m["fits"]:
        return checks + [Check(FAIL, "gpu memory", f"{what}, over 90 %: lower train.micro_batch_size, turn "
                               "model.recompute on, or use a higher ZeRO stage (nexa-plan)")]
    return checks + [Check(PASS, "gpu memory", what)]


def bus_bandwidth(op: str, nbytes: int, ranks: int, seconds: float) -> float:
    """GB/s on the bus, as nccl-tests reports it: all-reduce moves 2(n-1)/n of the buffer, all-gather (n-1)/n."""
    factor = 2 * (ranks - 1) / ranks if op == "all_reduce" else (ranks - 1) / ranks
    return nbytes / seconds * factor / 1e9


def judge(name: str, measured: float, expected: float, fabric: str) -> Check:
    what = f"{measured:.1f} GB/s bus bandwidth, {expected:.0f} GB/s expected for {fabric}"
    if measured < FAIL_FRACTION * expected:
        return Check(FAIL, name, f"{what}: under {FAIL_FRACTION:.0%}. A fabric fallen back to TCP (or PCIe) reads "
                     "this; rerun with NCCL_DEBUG=INFO to see the transport, check NCCL_IB_HCA / NCCL_SOCKET_IFNAME")
    if measured < WARN_FRACTION * expected:
        return Check(WARN, name, f"{what}: under {WARN_FRACTION:.0%}; the run will be slower than planned")
    return Check(PASS, name, what)


def _time_collective(op: str, nbytes: int, group, iters: int = 5, device: str = "cuda") -> float:
    import torch
    import torch.distributed as dist

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    ranks = dist.get_world_size(group)
    n = nbytes // 4 // (ranks if op == "all_gather" else 1)  # all-gather: nbytes gathered, as nccl-tests sizes it
    x = torch.ones(n, device=device)
    out = torch.empty(n * ranks if op == "all_gather" else 0, device=device)
    run = (lambda: dist.all_reduce(x, group=group)) if op == "all_reduce" else (
        lambda: dist.all_gather_into_tensor(out, x, group=group))
    for _ in range(2):
        run()
    sync()
    dist.barrier(group=group)
    t0 = time.perf_counter()
    for _ in range(iters):
        run()
    sync()
    seconds = (time.perf_counter() - t0) / iters
    seconds = torch.tensor([seconds], device=device)
    dist.all_reduce(seconds, op=dist.ReduceOp.MAX, group=group)  # the slowest rank's
    return bus_bandwidth(op, 4 * n * (ranks if op == "all_gather" else 1), ranks, float(seconds))


def check_collectives(layout: Layout, expect_intra: float = EXPECT_INTRA_GBPS, expect_inter: float | None = None,
                      nbytes: int = 256 * 2**20, device: str = "cuda") -> list[Check]:
    """An NCCL all-reduce and all-gather within each node and across all ranks (run on every rank, under srun;
    ``device="cpu"`` on gloo for the tests). ``expect_inter`` defaults to ``expect_inter_gbps`` of the layout."""
    expect_inter = expect_inter or expect_inter_gbps(layout.per_node)
    import torch.distributed as dist

    if layout.world_size < 2:
        return [Check(SKIP, "nccl", "one rank: no collective to measure")]
    checks = []
    intra, _ = dist.new_subgroups(group_size=layout.per_node) if layout.per_node > 1 else (None, None)
    for op in ("all_reduce", "all_gather"):
        if intra is not None:
            checks.append(judge(f"nccl {op} intra-node", _time_collective(op, nbytes, intra, device=device), expect_intra,
                                f"NVLink within a node ({layout.per_node} GPUs)"))
        if layout.nodes > 1:
            checks.append(judge(f"nccl {op} inter-node", _time_collective(op, nbytes, None, device=device), expect_inter,
                                f"InfiniBand across {layout.nodes} nodes ({layout.world_size} GPUs)"))
    return checks or [Check(SKIP, "nccl", "one GPU a node on one node: no collective to measure")]
