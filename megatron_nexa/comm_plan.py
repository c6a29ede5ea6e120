"""The bytes each rank moves in one optimizer step under DeepSpeed ZeRO-1/2/3, by collective, as DeepSpeed 0.19 moves
them. ``tests/integration/test_comm_plan.py`` checks every figure against DeepSpeed's own comms logger on 2- and
4-rank runs.

What DeepSpeed does (read from its code and confirmed by the logger):
- ZeRO-1: one all-reduce of every gradient at the accumulation boundary; ZeRO-2: the same all-reduce after every
  micro-batch (its default multi-rank bucket all-reduce). Both then all-gather the updated parameters: each optimiser
  group is flattened and padded to a multiple of 2 x ranks elements, and each rank sends its share.
- ZeRO-3: every micro-batch gathers each non-persistent parameter for the forward; a parameter released after its
  forward use (not reused within ``stage3_max_reuse_distance`` parameters of the module trace) is gathered again for
  the backward; gradients are reduce-scattered after every micro-batch. Each parameter is partitioned on its own,
  padded to a multiple of the ranks. Persistent parameters (at most ``stage3_param_persistence_threshold`` elements)
  stay whole and are all-gathered once per step, after the update.
  With ZeRO++ hpZ (``zero_hpz_partition_size``), each rank also keeps a secondary partition, shared within groups of
  that many ranks (a node), until the next update: only the first forward after an update gathers over all ranks;
  the backward's gathers, and the later micro-batches' forwards, read ``ranks / hpz`` times the shard over the group.
- Scalars: the gradient norm (8 bytes) and, for ZeRO-1/2, the overflow flag (1 byte).

A call's bytes are what the comms logger records: the input tensor (a rank's shard for an all-gather, the whole
buffer for a reduce-scatter or an all-reduce). ``wire_bytes`` turns them into what a rank sends (and receives) with
ring algorithms, NCCL's choice for large messages.
"""
import math
from dataclasses import dataclass, field

import torch

from megatron_nexa.config import ModelConfig
from megatron_nexa.model.pretraining import NexaSpecForPretraining
from megatron_nexa.model.reference import ReferenceEncoder, TransformerLayer
from megatron_nexa.model.weight_decay import param_groups

ALL_GATHER, REDUCE_SCATTER, ALL_REDUCE = "all_gather_into_tensor", "reduce_scatter_tensor", "all_reduce"
HPZ_GATHER = "all_gather_into_tensor (hpZ group)"  # ZeRO++ hpZ: the backward's gathers, within a node
GRAD_NORM_BYTES, OVERFLOW_FLAG_BYTES = 8, 1


@dataclass(frozen=True)
class CommSettings:
    """The part of a DeepSpeed config that decides the bytes; DeepSpeed 0.19's defaults."""
    stage: int
    bytes_per_element: int = 2  # bf16; 4 without bf16/fp16
    param_persistence_threshold: int = 100_000
    max_reuse_distance: int = 1_000_000_000
    hpz_partition_size: int = 1

    @classmethod
    def from_ds_config(cls, ds: dict) -> "CommSettings":
        zero = ds.get("zero_optimization", {})
        half = any(ds.get(k, {}).get("enabled", False) for k in ("bf16", "fp16"))
        known = {"stage3_param_persistence_threshold": "param_persistence_threshold",
                 "stage3_max_reuse_distance": "max_reuse_distance", "zero_hpz_partition_size": "hpz_partition_size"}
        values = {ours: zero[theirs] for theirs, ours in known.items() if theirs in zero and zero[theirs] != "auto"}
        settings = cls(stage=zero.get("stage", 0), bytes_per_element=2 if half else 4, **values)
        if settings.stage not in (1, 2, 3):
            raise ValueError(f"ZeRO stage {settings.stage}: the communication plan covers stages 1, 2 and 3")
        return settings


@dataclass
class Entry:
    """A module in ZeRO-3's trace: the sizes of the parameters fetched with it (a leaf's all, gathered whole; another
    module's own), the count of its own and of all its parameters, and whether it is a leaf."""
    node: int
    own: list[int]
    direct: int
    total: int
    leaf: bool


@dataclass
class Inventory:
    """The parameters as ZeRO sees them. ``forward`` is the module trace of a forward pass (pre-order, leaves not
    entered), ``backward`` that of the backward (parents first, children in reverse order), as DeepSpeed 0.19
    records them; ``ancestors`` maps a module to the modules that contain it; ``groups`` are the optimiser groups'
    sizes."""
    forward: list[Entry]
    backward: list[Entry]
    ancestors: dict[int, set[int]]
    groups: list[int]

    @property
    def units(self) -> list[Entry]:
        """What is fetched and released together, in forward order."""
        return [e for e in self.forward if e.leaf or e.own]

    @property
    def sizes(self) -> list[int]:
        return [n for e in self.units for n in e.own]


def inventory(cfg: ModelConfig, weight_decay: float = 0.1) -> Inventory:
    """From the plain-PyTorch model on the meta device, which has the megatron model's parameters, shapes and
    module nesting."""
    with torch.device("meta"):
        model = NexaSpecForPretraining(cfg, ReferenceEncoder(cfg))
    ancestors: dict[int, set[int]] = {}

    def walk(module: torch.nn.Module, parents: set[int], reverse: bool) -> list[Entry]:
        leaf = isinstance(module, TransformerLayer) or getattr(module, "gathered_whole", False)
        own = [p.numel() for p in (module.parameters() if leaf else module.parameters(recurse=False))]
        ancestors[id(module)] = parents
        entries = [Entry(id(module), own, sum(p.numel() for p in module.parameters(recurse=False)),
                         sum(p.numel() for p in module.parameters()), leaf)]
        if not leaf:
            children = list(module.children())
            for child in reversed(children) if reverse else children:
                entries += walk(child, parents | {id(module)}, reverse)
        return entries

    forward, backward = walk(model, set(), False), walk(model, set(), True)
    groups = [sum(p.numel() for p in g["params"]) for g in param_groups(model, weight_decay)]
    return Inventory(forward, backward, ancestors, [g for g in groups if g])


def _shard(n: int, ranks: int) -> int:
    return math.ceil(n / ranks)


def regathered(inv: Inventory, settings: CommSettings) -> list[bool]:
    """Per fetch unit: released after its forward use, so gathered again for the backward? DeepSpeed walks the trace
    from the unit on, counting the parameters of each module it passes (a leaf counts everything inside a module, a
    module its own only), and keeps the unit if a module holding its parameters (itself, or for a leaf any
    ancestor) comes before ``max_reuse_distance`` elements are counted."""
    trace = inv.forward + inv.backward
    out = []
    for i, entry in enumerate(inv.forward):
        if not (entry.leaf or entry.own):
            continue
        holders = {entry.node} | (inv.ancestors[entry.node] if entry.leaf else set())
        counted, kept = 0, False
        for later in trace[i + 1:]:
            if counted >= settings.max_reuse_distance:
                break
            if later.node in holders:
                kept = True
                break
            counted += later.total if entry.leaf else later.direct
        out.append(not kept)
    return out


@dataclass
class CommVolume:
    """Per optimizer step, per collective: the bytes DeepSpeed's comms logger records on one rank; of them, those
    sent after the update (the updated parameters' all-gather), which no compute can hide. ``hpz`` ranks form the
    group of ``HPZ_GATHER`` (the logger counts it as an all-gather)."""
    ranks: int
    message_bytes: dict[str, float] = field(default_factory=dict)
    after_update: dict[str, float] = field(default_factory=dict)
    hpz: int = 1

    def wire_bytes(self, after_update: bool = False) -> dict[str, float]:
        """What one rank sends, and as much receives, with ring algorithms."""
        n = self.ranks
        factor = {ALL_GATHER: n - 1, REDUCE_SCATTER: (n - 1) / n, ALL_REDUCE: 2 * (n - 1) / n, HPZ_GATHER: self.hpz - 1}
        source = self.after_update if after_update else self.message_bytes
        return {op: b * factor[op] for op, b in source.items()}

    def logged(self) -> dict[str, float]:
        """By DeepSpeed's collective names, as its comms logger reports them."""
        out: dict[str, float] = {}
        for op, b in self.message_bytes.items():
            name = ALL_GATHER if op == HPZ_GATHER else op
            out[name] = out.get(name, 0.0) + b
        return out


def comm_volume(inv: Inventory, settings: CommSettings, ranks: int, grad_accum: int = 1) -> CommVolume:
    b, sizes = settings.bytes_per_element, inv.sizes
    if ranks == 1:
        return CommVolume(ranks, {})
    if settings.stage in (1, 2):
        grads = sum(sizes) * b * (grad_accum if settings.stage == 2 else 1)
        align = 2 * ranks
        updated = sum(math.ceil(g / align) * align for g in inv.groups) // ranks * b
        return CommVolume(ranks, {ALL_REDUCE: grads + GRAD_NORM_BYTES + OVERFLOW_FLAG_BYTES, ALL_GATHER: updated},
                          {ALL_GATHER: updated})
    persistent, hpz = settings.param_persistence_threshold, settings.hpz_partition_size
    if hpz > 1 and ranks % hpz:
        raise ValueError(f"zero_hpz_partition_size {hpz} does not divide the {ranks} ranks")
    again = regathered(inv, settings)
    forward = sum(_shard(n, ranks) * b for unit in inv.units for n in unit.own if n > persistent)
    backward = sum(_shard(n, ranks) * b for unit, twice in zip(inv.units, again) if twice
                   for n in unit.own if n > persistent)
    persisted = sum(_shard(n, ranks) * b for n in sizes if n <= persistent)
    reduced = sum(_shard(n, ranks) * ranks * b for n in sizes)
    volume = {REDUCE_SCATTER: reduced * grad_accum, ALL_REDUCE: GRAD_NORM_BYTES}
    if hpz == 1:
        volume[ALL_GATHER] = (forward + backward) * grad_accum + persisted
    else:  # after the update's first forward, every gather reads a group's secondary partition (x ranks / hpz)
        volume[ALL_GATHER] = forward + persisted
        volume[HPZ_GATHER] = ((grad_accum - 1) * forward + grad_accum * backward) * (ranks // hpz)
    return CommVolume(ranks, volume, {ALL_GATHER: persisted}, hpz)
