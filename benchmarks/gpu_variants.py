"""The variants ``benchmarks/gpu_step.py`` times, by name: what each changes in the model, the run config or the
DeepSpeed config, and what follows from that without a GPU (the run config, the DeepSpeed config, nexa-plan's
memory for one GPU). ``benchmarks/plan_memory.py`` and ``gpu_check.sh``'s test read the same table.
"""
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from megatron_nexa.cluster_plan import Cluster, ZeroSettings, default_zero, plan
from megatron_nexa.config import AttentionBackend, Recompute, load_config
from megatron_nexa.testing import MASKED_SHARE

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Variant:
    engine: bool = True
    ds_config: str = "zero3"  # ds_configs/<name>.json
    zero_overrides: dict = field(default_factory=dict)  # merged into "zero_optimization"
    recompute: Recompute = Recompute.NONE
    attention: AttentionBackend = AttentionBackend.SDPA
    batch_factor: int = 1  # micro-batch = --micro-batch x this
    accumulation: int = 1  # micro-batches per optimiser step (one timed call = one micro-batch)
    ds_sections: dict = field(default_factory=dict)  # top-level DeepSpeed config sections added (e.g. compile)
    compile: bool = False  # torch.compile the plain model, or engine.compile() (DeepCompile with ds_sections)
    heads: bool = True  # False (plain only): encoder alone, loss = mean square of its output, no heads
    cfg_overrides: tuple = ()  # run-config overrides (engine variants: what pretrain_nexa.py would be given)
    head_dim: int = 0  # > 0: as many attention heads as give this head size at the model's width (same FLOPs)
    deepspeed_fetch: bool = False  # one GPU: DeepSpeed's own no-gather wait, not engine.one_rank_fetch's
    note: str = ""


PERSIST = {"stage3_param_persistence_threshold": 10**9}  # every parameter persistent: no gather/release
NOBIAS = ("model.linear_bias=false",)  # run-config overrides shared by several variants
COMPILE_LAYERS = ("train.compile=true",)
SAVE_GELU = ("model.recompute_gelu=false",)

VARIANTS = {
    "amp": Variant(engine=False, note="baseline: plain PyTorch, fp32 master weights, bf16 autocast, fused AdamW"),
    "amp_mb2x": Variant(engine=False, batch_factor=2, note="baseline at twice the micro-batch"),
    "amp_mb4x": Variant(engine=False, batch_factor=4, note="baseline at four times the micro-batch"),
    "amp_mb8x": Variant(engine=False, batch_factor=8, note="baseline at eight times the micro-batch"),
    "zero3": Variant(note="ds_configs/zero3.json as shipped (each layer and the three heads as leaf modules), "
                          "no recompute"),
    "zero3_halves": Variant(zero_overrides={"leaf_module": {"classes": [
        "megatron.core.transformer.attention.SelfAttention", "megatron_nexa.model.layer_specs.NexaMLP",
        "megatron_nexa.model.heads.MaskedPeakHead"]}},
        note="attention and MLP as separate leaves, not the whole layer (zero3.json of sessions 2-4)"),
    "zero3_full": Variant(recompute=Recompute.FULL, note="full recompute (the card's §6.2; the shipped configs run without)"),
    "zero3_selective": Variant(recompute=Recompute.SELECTIVE, note="selective recompute (core attention)"),
    "zero3_local": Variant(attention=AttentionBackend.LOCAL, note="megatron's unfused DotProductAttention"),
    "zero3_nobias": Variant(cfg_overrides=NOBIAS,
                            note="model.linear_bias false: 8 parameters a layer, not 12 (ZeRO-3's host work is per parameter)"),
    "zero3_persist": Variant(zero_overrides=PERSIST,
                             note="every parameter persistent: ZeRO-3 without gather/release"),
    "zero3_mb2x": Variant(batch_factor=2, note="twice the micro-batch"),
    "zero3_mb8x": Variant(batch_factor=8, note="eight times the micro-batch"),
    "zero3_mb8x_persist": Variant(batch_factor=8, zero_overrides=PERSIST,
                                  note="eight times the micro-batch, every parameter persistent"),
    "zero3_mb4x_persist": Variant(batch_factor=4, zero_overrides=PERSIST,
                                  note="four times the micro-batch, every parameter persistent"),
    "zero3_mb4x": Variant(batch_factor=4, note="four times the micro-batch"),
    "zero3_gas4": Variant(accumulation=4, note="4 micro-batches per optimiser step (gradient accumulation)"),
    "zero3_noleaf": Variant(zero_overrides={"leaf_module": {"classes": []}},
                            note="no leaf modules: ZeRO-3 hooks every submodule (zero3.json before 2026-11-26)"),
    "amp_compile": Variant(engine=False, compile=True, note="baseline under torch.compile"),
    "amp_encoder": Variant(engine=False, heads=False,
                           note="baseline without heads and losses: what embeddings + layers cost alone"),
    "zero3_deepcompile": Variant(ds_sections={"compile": {"deepcompile": True}}, compile=True,
                                 note="DeepCompile: ZeRO-3 gather/release scheduled in the compiled graph"),
    "zero3_compile": Variant(compile=True, note="engine.compile(): torch.compile of the ZeRO-3 module, no DeepCompile"),
    "zero3_compile_layers": Variant(cfg_overrides=COMPILE_LAYERS,
                                    note="train.compile: each layer's forward compiled, ZeRO-3's hooks eager"),
    "zero3_no_overlap": Variant(zero_overrides={"overlap_comm": False},
                                note="gradient reduction on the compute stream: no side stream to wait for"),
    "zero3_noncontig": Variant(zero_overrides={"contiguous_gradients": False},
                               note="no copy of each gradient into a contiguous bucket (9 ms of copies at mb 128)"),
    "zero3_nobias_compile_layers": Variant(cfg_overrides=NOBIAS + COMPILE_LAYERS,
                                           note="zero3_nobias and zero3_compile_layers together"),
    "zero3_savegelu": Variant(cfg_overrides=SAVE_GELU,
                              note="model.recompute_gelu false: the MLP saves the GELU's output (layers up to §26)"),
    "zero3_compile_layers_savegelu": Variant(cfg_overrides=COMPILE_LAYERS + SAVE_GELU,
                                             note="zero3_compile_layers and zero3_savegelu together"),
    "zero3_hd64": Variant(head_dim=64, note="head size 64 (3B: 36 heads, not the card's 32 of size 72)"),
    "zero3_dsfetch": Variant(deepspeed_fetch=True,
                             note="DeepSpeed's one-rank fetch, a host sync per module (zero3 up to 2026-11-27's §20)"),
    "zero2": Variant(ds_config="zero2", note="ds_configs/zero2.json"),
    "zero1": Variant(ds_config="zero1", note="ds_configs/zero1.json"),
}
# The pilot's global batch (512) on one GPU, as accumulated micro-batches (times are per micro-batch), for each
# base variant: "<base>_gas16" at --micro-batch 32, "<base>_gas32" at 16 (the whole 7B without recompute on an
# H200), "<base>_mb2x_gas8" at twice --micro-batch (the 3B at 64: 69.3 GiB by nexa-plan, RESULTS.md §26).
ACCUMULATED = {"gas16": {"accumulation": 16}, "gas32": {"accumulation": 32},
               "mb2x_gas8": {"batch_factor": 2, "accumulation": 8}}
VARIANTS.update({f"{base}_{suffix}": replace(VARIANTS[base], **changes,
                                             note=f"{VARIANTS[base].note}; {suffix}: the pilot's global batch")
                 for base in ("zero3", "amp", "zero2", "zero3_full", "zero3_compile_layers", "zero3_nobias_compile_layers",
                              "zero3_deepcompile", "zero3_savegelu", "zero3_compile_layers_savegelu")
                 for suffix, changes in ACCUMULATED.items()})


def ds_config(variant: Variant) -> dict:
    ds = json.loads((REPO / f"ds_configs/{variant.ds_config}.json").read_text())
    ds["zero_optimization"].update(variant.zero_overrides)
    ds.update(variant.ds_sections)
    if variant.recompute == Recompute.NONE:
        ds.pop("activation_checkpointing", None)  # its presence turns full recompute on (engine/ds_config.py)
    return ds


def plan_gib(cfg, variant: Variant, micro_batch: int) -> float | None:
    """nexa-plan's per-GPU memory for this variant on one GPU, sized by its DeepSpeed config, for
    ``synthetic_batch``'s share of masked tokens."""
    if not variant.engine:
        return None
    zero = ZeroSettings.from_section(ds_config(variant)["zero_optimization"])
    cluster = Cluster(gpus_per_node=1, nodes=1, micro_batch=micro_batch, recompute=variant.recompute,
                      masked_fraction=MASKED_SHARE, zero={**default_zero(), zero.stage: zero})
    return plan(cfg.model, cluster)["memory_gib"][zero.stage]["total"]


def variant_config(model: str, layers: int, micro_batch: int, variant: Variant):
    """The run config of ``variant`` at ``configs/model/<model>.yaml``'s width (micro-batch before its factor)."""
    mb = micro_batch * variant.batch_factor
    overrides = [f"model.num_layers={layers}", f"model.recompute={variant.recompute.value}",
                 f"model.attention_backend={variant.attention.value}",
                 f"train.micro_batch_size={mb}", f"train.global_batch_size={mb * variant.accumulation}",
                 *variant.cfg_overrides]
    cfg = load_config(REPO / f"configs/model/{model}.yaml", overrides)
    if variant.head_dim:
        overrides.append(f"model.num_attention_heads={cfg.model.hidden_size // variant.head_dim}")
        cfg = load_config(REPO / f"configs/model/{model}.yaml", overrides)
    return cfg
