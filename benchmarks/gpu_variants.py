"""The variants ``benchmarks/gpu_step.py`` times, by name: what each changes in the model, the run config or the
DeepSpeed config, and what follows from that without a GPU (the run config, the DeepSpeed config, nexa-plan's
memory for one GPU). ``benchmarks/plan_memory.py`` reads the same table.

The variants are the baseline (plain PyTorch AMP), the shipped configuration (``zero3``; with compiled layers, as the
pilots run) and each option the configs offer (ZeRO stage, recompute, attention backend, linear biases, the GELU
saved, micro-batch), alone or with accumulation to the pilot's global batch.
"""
import json
from dataclasses import asdict, dataclass, field, replace
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
    compile: bool = False  # plain only: torch.compile the model (engine variants compile layers: COMPILE_LAYERS)
    heads: bool = True  # False (plain only): encoder alone, loss = mean square of its output, no heads
    cfg_overrides: tuple = ()  # run-config overrides (engine variants: what pretrain_nexa.py would be given)
    note: str = ""


NOBIAS = ("model.linear_bias=false",)  # run-config overrides shared by several variants
COMPILE_LAYERS = ("train.compile=true",)
SAVE_GELU = ("model.recompute_gelu=false",)

VARIANTS = {
    "amp": Variant(engine=False, note="baseline: plain PyTorch, fp32 master weights, bf16 autocast, fused AdamW"),
    "amp_mb2x": Variant(engine=False, batch_factor=2, note="baseline at twice the micro-batch"),
    "amp_mb4x": Variant(engine=False, batch_factor=4, note="baseline at four times the micro-batch"),
    "amp_compile": Variant(engine=False, compile=True, note="baseline under torch.compile"),
    "amp_encoder": Variant(engine=False, heads=False,
                           note="baseline without heads and losses: what embeddings + layers cost alone"),
    "zero3": Variant(note="ds_configs/zero3.json as shipped (each layer and the three heads as leaf modules), "
                          "no recompute"),
    "zero3_compile_layers": Variant(cfg_overrides=COMPILE_LAYERS,
                                    note="train.compile: each layer's forward compiled, ZeRO-3's hooks eager "
                                         "(the pilots' setting)"),
    "zero3_full": Variant(recompute=Recompute.FULL, note="model.recompute full"),
    "zero3_selective": Variant(recompute=Recompute.SELECTIVE, note="model.recompute selective (core attention)"),
    "zero3_local": Variant(attention=AttentionBackend.LOCAL,
                           note="model.attention_backend local: megatron's unfused DotProductAttention"),
    "zero3_nobias": Variant(cfg_overrides=NOBIAS,
                            note="model.linear_bias false: 8 parameters a layer, not 12 (ZeRO-3's host work is per parameter)"),
    "zero3_savegelu": Variant(cfg_overrides=SAVE_GELU,
                              note="model.recompute_gelu false: the MLP saves the GELU's output"),
    "zero3_nobias_compile_layers": Variant(cfg_overrides=NOBIAS + COMPILE_LAYERS,
                                           note="zero3_nobias and zero3_compile_layers together"),
    "zero3_compile_layers_savegelu": Variant(cfg_overrides=COMPILE_LAYERS + SAVE_GELU,
                                             note="zero3_compile_layers and zero3_savegelu together"),
    "zero3_mb2x": Variant(batch_factor=2, note="twice the micro-batch"),
    "zero3_mb4x": Variant(batch_factor=4, note="four times the micro-batch"),
    "zero2": Variant(ds_config="zero2", note="ds_configs/zero2.json"),
    "zero1": Variant(ds_config="zero1", note="ds_configs/zero1.json"),
}
# The pilot's global batch (512) on one GPU, as accumulated micro-batches (times are per micro-batch), for each
# base variant: "<base>_gas16" at --micro-batch 32, "<base>_gas32" at 16, "<base>_mb2x_gas8" at twice --micro-batch.
ACCUMULATED = {"gas16": {"accumulation": 16}, "gas32": {"accumulation": 32},
               "mb2x_gas8": {"batch_factor": 2, "accumulation": 8}}
VARIANTS.update({f"{base}_{suffix}": replace(VARIANTS[base], **changes,
                                             note=f"{VARIANTS[base].note}; {suffix}: the pilot's global batch")
                 for base in ("zero3", "amp", "zero2", "zero3_full", "zero3_compile_layers", "zero3_nobias_compile_layers",
                              "zero3_savegelu", "zero3_compile_layers_savegelu")
                 for suffix, changes in ACCUMULATED.items()})


def ds_config(variant: Variant) -> dict:
    ds = json.loads((REPO / f"ds_configs/{variant.ds_config}.json").read_text())
    ds["zero_optimization"].update(variant.zero_overrides)
    if variant.recompute == Recompute.NONE:
        ds.pop("activation_checkpointing", None)  # its presence turns full recompute on (engine/ds_config.py)
    return ds


def variant_overrides(layers: int, micro_batch: int, variant: Variant) -> list[str]:
    """The run-config overrides of ``variant`` (``micro_batch`` before its factor)."""
    mb = micro_batch * variant.batch_factor
    return [f"model.num_layers={layers}", f"model.recompute={variant.recompute.value}",
            f"model.attention_backend={variant.attention.value}",
            f"train.micro_batch_size={mb}", f"train.global_batch_size={mb * variant.accumulation}",
            *variant.cfg_overrides]


def variant_config(model: str, layers: int, micro_batch: int, variant: Variant):
    """The run config of ``variant`` at ``configs/model/<model>.yaml``'s width (micro-batch before its factor)."""
    return load_config(REPO / f"configs/model/{model}.yaml", variant_overrides(layers, micro_batch, variant))


def plan_settings(model: str, layers: int, micro_batch: int, variant: Variant, recompute_gelu: bool) -> dict | None:
    """What nexa-plan needs to size ``variant`` on one GPU, self-contained (no variant name): the model config
    and its overrides, the micro-batch, recompute, the ZeRO settings and ``synthetic_batch``'s share of masked
    tokens. None for plain variants. gpu_step records it in every row."""
    if not variant.engine:
        return None
    zero = ZeroSettings.from_section(ds_config(variant)["zero_optimization"])
    overrides = [o for o in variant_overrides(layers, micro_batch, variant) if not o.startswith("model.recompute_gelu=")]
    overrides.append(f"model.recompute_gelu={str(recompute_gelu).lower()}")  # as the row's layers ran
    return {"model": f"configs/model/{model}.yaml", "overrides": overrides,
            "micro_batch": micro_batch * variant.batch_factor, "recompute": variant.recompute.value,
            "masked_fraction": MASKED_SHARE, "zero": asdict(zero)}


def plan_gib(settings: dict) -> float:
    """nexa-plan's per-GPU memory (GiB) on one GPU for ``plan_settings``."""
    cfg = load_config(REPO / settings["model"], settings["overrides"])
    zero = ZeroSettings(**settings["zero"])
    cluster = Cluster(gpus_per_node=1, nodes=1, micro_batch=settings["micro_batch"],
                      recompute=Recompute(settings["recompute"]), masked_fraction=settings["masked_fraction"],
                      zero={**default_zero(), zero.stage: zero})
    return plan(cfg.model, cluster)["memory_gib"][zero.stage]["total"]
