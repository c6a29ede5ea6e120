"""Predicted time of one optimizer step on a cluster: measured compute, the communication plan's bytes over the
fabric's bandwidth, and how much of the one hides under the other.

- **Compute** per micro-batch is the forward + backward measured on one GPU (``benchmarks/results/*/…gpu_step*.json``,
  the rows with accumulation, where the update is amortised), scaled linearly to the micro-batch asked for. The
  optimiser update (measured on one GPU for the whole model) is divided over the ranks, as ZeRO shards it. With two
  or more ranks ZeRO-3 also pays DeepSpeed's host work per fetched module, which one rank skips; it is measured on
  one GPU as the difference between the fetch with and without that work.
- **Communication**: a collective takes ``wire bytes / bus bandwidth`` (nccl-tests' definition of bus bandwidth
  makes this exact for ring all-gather, reduce-scatter and all-reduce). Across nodes the ring runs at the per-GPU
  network bandwidth; within one node at NVLink's. Per-call latency is left out: the messages are megabytes.
- **Overlap**, a range: none (compute, then every collective) to full (the longer of the two), and the most likely
  value from what DeepSpeed overlaps. ZeRO-3 with prefetch hides its gathers under compute except one module's per
  pass, and its reduce-scatter under the backward; ZeRO-2 with ``overlap_comm`` hides its all-reduce under the
  backward; ZeRO-1 reduces at the boundary after the backward; the parameter all-gather after the update, and the
  update itself, hide under nothing.
"""
import json
import re
from dataclasses import dataclass
from pathlib import Path

from megatron_nexa.comm_plan import (ALL_GATHER, ALL_REDUCE, HPZ_GATHER, REDUCE_SCATTER, CommSettings, CommVolume,
                                     Inventory, comm_volume, inventory)
from megatron_nexa.config import ModelConfig, Recompute, load_config
from megatron_nexa.plan import count_parameters

REPO = Path(__file__).resolve().parents[1]
MEASURED, CONFIGS = REPO / "benchmarks" / "results", REPO / "configs" / "model"


@dataclass(frozen=True)
class Link:
    name: str
    nominal_gbs: float  # per GPU (or per node, ``per_node``), per direction
    efficiency: float  # bus bandwidth nccl-tests reaches on large messages, as a fraction of nominal (assumed)
    source: str
    per_node: bool = False  # one link a node, shared by its GPUs

    @property
    def bus_gbs(self) -> float:
        return self.nominal_gbs * self.efficiency


LINKS = {link.name: link for link in [
    Link("nvlink4", 450.0, 0.8, "NVLink 4 on H100/H200 SXM: 900 GB/s per GPU, both directions (NVIDIA H100 and H200 "
         "datasheets)"),
    Link("pcie5", 64.0, 0.5, "PCIe 5.0 x16: 64 GB/s per direction (PCI-SIG); GPU to GPU through the host"),
    Link("ndr400", 50.0, 0.8, "InfiniBand NDR, 400 Gb/s per GPU with one ConnectX-7 per GPU (NVIDIA ConnectX-7)"),
    Link("hdr200", 25.0, 0.8, "InfiniBand HDR, 200 Gb/s per GPU with one ConnectX-6 per GPU (NVIDIA ConnectX-6)"),
    Link("roce400", 50.0, 0.7, "RoCE v2 over 400 GbE per GPU (IEEE 802.3bs); lossy-Ethernet tuning assumed"),
    Link("tcp25", 3.1, 0.8, "25 GbE sockets, one a node: what InfiniBand falling back to TCP gives", per_node=True),
]}


def across_nodes_gbs(fabric: Link, intra: Link, gpus_per_node: int) -> float:
    """The bus bandwidth of a ring over several nodes. NCCL runs one ring (channel) per NIC, each leaving a node
    through another GPU's NIC, so a node boundary carries 1/G of every rank's bytes on each of its G NICs: the ring
    runs at the node's NIC bandwidth in all (one NIC a GPU), and never faster than NVLink within the node."""
    return min(fabric.bus_gbs * (1 if fabric.per_node else gpus_per_node), intra.bus_gbs)


@dataclass(frozen=True)
class Compute:
    """One GPU's measured times (ms): forward + backward per micro-batch of ``micro_batch``; the optimiser update per
    billion parameters; DeepSpeed's host work per fetched module; and where they were measured."""
    micro_batch: int
    micro_ms: float
    update_ms_per_billion: float
    host_ms_per_fetch: float
    source: str

    def micro_at(self, micro_batch: int) -> float:
        return self.micro_ms * micro_batch / self.micro_batch


def matches(variant: str, cfg: ModelConfig, compiled: bool) -> bool:
    """Is a recorded ``gpu_step`` variant this model as configured: ZeRO-3 with accumulation (the update amortised),
    compiled layers or not, the GELU saved or recomputed, biases, full recompute, as the config has them?"""
    tokens = variant.split("_")
    if tokens[0] != "zero3" or not any(re.fullmatch(r"gas\d+", t) for t in tokens):
        return False
    wanted = {"compile": compiled, "layers": compiled, "savegelu": not cfg.recompute_gelu,
              "nobias": not cfg.linear_bias, "full": cfg.recompute == Recompute.FULL}
    rest = set(tokens[1:]) - {t for t in tokens if re.fullmatch(r"gas\d+", t)} - {"mb2x"}
    return rest <= set(wanted) and all((name in rest) == on for name, on in wanted.items())


def _rows():
    for path in sorted(MEASURED.glob("*/*.json")):
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        if not isinstance(data, dict) or "rows" not in data:
            continue
        model = data.get("args", {}).get("model")
        for row in data["rows"]:
            if "phases_ms" in row:
                yield path, data["env"]["device"], model, row


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def _model_config(name: str) -> ModelConfig | None:
    path = CONFIGS / f"{name}.yaml"
    return load_config(path).model if path.exists() else None


def measured_compute(model_name: str, cfg: ModelConfig, micro_batch: int, compiled: bool = False) -> Compute | None:
    """From the recorded single-GPU runs: ``model_name``'s ZeRO-3 rows with accumulation at its full depth, in the
    configured variant (``matches``), at the micro-batch closest to ``micro_batch``; None where it was never measured.
    The update and the host work come from whichever model was measured, per parameter and per fetched module."""
    rows = list(_rows())
    mine = [(p, d, r) for p, d, m, r in rows if m == model_name and r.get("layers") == cfg.num_layers
            and matches(r["variant"], cfg, compiled)]
    if not mine:
        return None
    mb = min({r["micro_batch"] for _, _, r in mine}, key=lambda m: (abs(m - micro_batch), m))
    chosen = [(p, d, r) for p, d, r in mine if r["micro_batch"] == mb]
    micro = _median([r["phases_ms"]["forward"] + r["phases_ms"]["backward"] for _, _, r in chosen])
    configs = {m: c for m in {m for _, _, m, _ in rows if m} if (c := _model_config(m)) is not None}
    whole = [(p, m, r) for p, _, m, r in rows if m in configs and r.get("layers") == configs[m].num_layers
             and (r.get("accumulation") or 1) == 1]
    billions = {m: count_parameters(configs[m]).total / 1e9 for m in {m for _, m, r in whole if r["variant"] == "zero3"}}
    update = [r["phases_ms"]["update"] / billions[m] for _, m, r in whole if r["variant"] == "zero3"]
    by_file: dict[tuple, dict[str, float]] = {}
    for p, m, r in whole:
        if r["variant"] in ("zero3", "zero3_nogathersync"):
            by_file.setdefault((p, m), {})[r["variant"]] = r["step_ms"]
    host = [(v["zero3"] - v["zero3_nogathersync"]) / (2 * len(inventory(configs[m]).units))
            for (_, m), v in by_file.items() if len(v) == 2]
    where = f"{', '.join(sorted({d for _, d, _ in chosen}))}: " + ", ".join(
        sorted({f"{p.parent.name}/{p.name}" for p, _, _ in chosen}))
    return Compute(mb, micro, _median(update) if update else 0.0, _median(host) if host else 0.0, where)


@dataclass
class StepTime:
    compute_s: float
    comm_s: dict[str, float]
    low_s: float
    likely_s: float
    high_s: float


def step_time(volume: CommVolume, settings: CommSettings, inv: Inventory, compute: Compute, micro_batch: int,
              grad_accum: int, bus_gbs: float, prefetch: bool, overlap_comm: bool,
              group_gbs: float | None = None) -> StepTime:
    """``bus_gbs``: the bus bandwidth of a ring over all ranks; ``group_gbs``: within an hpZ group (a node)."""
    ranks, params = volume.ranks, sum(inv.sizes)
    fetches = 2 * len(inv.units)  # a fetch per module in the forward and in the backward
    host = compute.host_ms_per_fetch * fetches if settings.stage == 3 and ranks > 1 else 0.0
    compute_s = grad_accum * (compute.micro_at(micro_batch) + host) / 1e3
    update_s = compute.update_ms_per_billion * params / 1e9 / ranks / 1e3
    comm = {op: b / ((group_gbs or bus_gbs) if op == HPZ_GATHER else bus_gbs) / 1e9
            for op, b in volume.wire_bytes().items()}
    after = volume.wire_bytes(after_update=True).get(ALL_GATHER, 0.0) / (bus_gbs * 1e9)
    total_comm = sum(comm.values())
    high = compute_s + total_comm + update_s
    low = max(compute_s, total_comm) + update_s
    if settings.stage == 3:
        passes = comm.get(ALL_GATHER, 0.0) - after + comm.get(HPZ_GATHER, 0.0)  # every micro-batch's gathers
        first = passes / max(len(inv.units), 1) if prefetch else passes  # one module's a pass waits unprefetched
        hidden = passes - first + (comm.get(REDUCE_SCATTER, 0.0) if overlap_comm else 0.0)
        exposed = first + after + comm.get(ALL_REDUCE, 0.0) + (0.0 if overlap_comm else comm.get(REDUCE_SCATTER, 0.0))
    else:
        reduce = comm.get(ALL_REDUCE, 0.0)
        hidden = reduce if settings.stage == 2 and overlap_comm else 0.0
        exposed = after + reduce - hidden
    likely = max(compute_s, hidden) + exposed + update_s
    return StepTime(compute_s, comm, low, min(max(likely, low), high), high)


def model_name(cfg: ModelConfig) -> str | None:
    """The shipped model config (configs/model/NAME.yaml) that ``cfg`` is, which names its measurements."""
    for path in sorted(CONFIGS.glob("*.yaml")):
        if load_config(path).model == cfg:
            return path.stem
    return None


@dataclass
class StagePrediction:
    label: str
    stage: int
    wire_gb: float
    time: StepTime
    mfu: float
    days: float
    extra_gib: float = 0.0  # memory beyond the stage's plan (hpZ's secondary partition)


def with_hpz(ds: dict, group: int) -> dict:
    """A ZeRO-3 config with ZeRO++ hpZ over groups of ``group`` ranks (a node)."""
    return {**ds, "zero_optimization": {**ds["zero_optimization"], "zero_hpz_partition_size": group}}


def predict(cfg: ModelConfig, compute: Compute, ds_by_label: dict[str, dict], gpus: int, micro_batch: int,
            grad_accum: int, bus_gbs: float, step_flops: float, peak_tflops: float, steps: float,
            weight_decay: float = 0.1, group_gbs: float | None = None) -> dict[str, StagePrediction]:
    """Each labelled DeepSpeed config's step: bytes, time range, MFU and days for ``steps`` steps."""
    inv = inventory(cfg, weight_decay)
    out = {}
    for label, ds in ds_by_label.items():
        settings = CommSettings.from_ds_config(ds)
        zero = ds.get("zero_optimization", {})
        volume = comm_volume(inv, settings, gpus, grad_accum)
        t = step_time(volume, settings, inv, compute, micro_batch, grad_accum, bus_gbs,
                      prefetch=zero.get("stage3_prefetch_bucket_size", 50_000_000) not in (0, "0"),
                      overlap_comm=zero.get("overlap_comm", settings.stage == 3), group_gbs=group_gbs)
        extra = settings.bytes_per_element * sum(inv.sizes) / settings.hpz_partition_size / 2**30 \
            if settings.hpz_partition_size > 1 else 0.0
        out[label] = StagePrediction(label, settings.stage, sum(volume.wire_bytes().values()) / 1e9, t,
                                     step_flops / (t.likely_s * gpus * peak_tflops * 1e12), steps * t.likely_s / 86400,
                                     extra)
    return out


def recommend(predicted: dict[str, StagePrediction], fits: dict[str, bool]) -> str | None:
    """The fastest setup that fits in memory (the likely step time)."""
    usable = [label for label in predicted if fits[label]]
    return min(usable, key=lambda label: predicted[label].time.likely_s) if usable else None


def render_prediction(predicted: dict[str, StagePrediction], fits: dict[str, bool], link: Link, bus: float,
                      tabled: float, compute: Compute, micro_batch: int) -> str:
    """``tabled``: the bus bandwidth the link table gives; ``bus``: the one used (a measured one replaces it)."""
    if bus != tabled:
        where = f"as given; the table's {link.name} gives {tabled:.0f}"
    elif link.name == "nvlink4" or link.per_node or tabled == LINKS["nvlink4"].bus_gbs:
        where = f"{link.efficiency:.0%} of {link.nominal_gbs:.0f} GB/s: {link.source}"
    else:
        where = (f"a NIC a GPU, each {link.efficiency:.0%} of {link.nominal_gbs:.0f} GB/s, the ring over all of a "
                 f"node's: {link.source}")
    lines = [f"  step time: {link.name} at {bus:.0f} GB/s bus bandwidth ({where})",
             f"    compute per micro-batch {compute.micro_at(micro_batch):.0f} ms ({compute.source})",
             "    setup            fits  sent GB/step  all-gather  reduce-scatter  all-reduce   "
             "step s: full overlap .. none (likely)    MFU    days (range)"]
    for label, pr in predicted.items():
        c, t = pr.time.comm_s, pr.time
        gathers = c.get(ALL_GATHER, 0.0) + c.get(HPZ_GATHER, 0.0)
        per_s = pr.days / t.likely_s
        lines.append(f"    {label:16s} {'yes' if fits[label] else 'no ':4s} {pr.wire_gb:12.2f} {gathers:10.3f}s "
                     f"{c.get(REDUCE_SCATTER, 0.0):14.3f}s {c.get(ALL_REDUCE, 0.0):10.3f}s   {t.low_s:6.3f} .. "
                     f"{t.high_s:6.3f} ({t.likely_s:.3f})   {pr.mfu:5.1%} {pr.days:7.1f} "
                     f"({t.low_s * per_s:.1f}-{t.high_s * per_s:.1f})")
    best = recommend(predicted, fits)
    if best is None:
        lines.append("  -> nothing fits: more GPUs, a smaller micro-batch or recompute")
        return "\n".join(lines)
    card = predicted.get("ZeRO-3")
    cost = f"; the card's ZeRO-3: {card.days:.1f} days ({card.days / predicted[best].days - 1:+.0%})" if card else ""
    lines.append(f"  -> recommended: {best}, the fastest that fits: {predicted[best].days:.1f} days{cost}")
    return "\n".join(lines)
