"""The 3B → 7B plan as numbers: tokens, steps, FLOPs, per-GPU memory under ZeRO-1/2/3, days to train.

Memory per GPU follows what DeepSpeed 0.19 allocates (bf16, AdamW), in two phases, the larger of which is
the peak (``benchmarks/plan_memory.py`` checks it against every peak measured on an H100):
- forward/backward, at the start of the backward where activations peak: bf16 parameters (2 B/param),
  the optimiser (12 B/param: fp32 master weights and Adam's two moments), the reduce buckets and, under
  ZeRO-3, its bf16 gradient partition (allocated at start-up) and the parameters gathered in flight;
  ZeRO-1/2 allocate their gradients only as the backward frees activations;
- the optimiser step: parameters, bf16 gradients and optimiser, plus the fp32 copy of the gradients the
  step works on (ZeRO-3: one ``sub_group_size`` at a time; ZeRO-1/2: the rank's whole partition).
ZeRO-1 shards the optimiser, ZeRO-2 also the gradients, ZeRO-3 also the parameters, over the
data-parallel ranks. Buffer sizes come from the DeepSpeed config (``ZeroSettings``).
Activations: per layer the tensors autograd saves in our encoder, ``34·s·b·h`` bytes (Korthikanti et al.,
"Reducing Activation Recomputation in Large Transformer Models", without dropout masks, plus the
attention output kept in both layouts) less the GELU's output (``2·s·b·ffn``) unless it is saved
(``model.recompute_gelu: false``), and the bf16 copy SDPA makes of the spectral mask (``2·b·s²``);
megatron's local attention adds its ``5·a·s²·b`` score tensors. Full recompute keeps each layer's input
(``2·s·b·h``), and during the backward one layer's activations and as much again for its gradients (the
two full-recompute peaks measured on an H100 sit there; one layer alone fell 8–9 % short). Outside the
layers: the embedding's Fourier features and intensity MLP, the final LayerNorm, and the masked-peak head
with its fp32 log-probabilities for each masked token and [CLS]. Both are checked against the tensors
autograd saves on small bf16 models (tests/unit/test_cluster_plan.py).
"""
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from megatron_nexa.config import AttentionBackend, MaskingConfig, ModelConfig, Recompute
from megatron_nexa.model.flops import forward_flops
from megatron_nexa.plan import count_parameters, layer_parameters_formula

GiB = 2**30


@dataclass(frozen=True)
class ZeroSettings:
    """The part of a DeepSpeed ``zero_optimization`` section that sizes memory; DeepSpeed 0.19's defaults."""
    stage: int
    reduce_bucket_size: int = 500_000_000
    contiguous_gradients: bool = True
    overlap_comm: bool | None = None  # None: DeepSpeed's default, on for ZeRO-3 only
    sub_group_size: int = 1_000_000_000
    stage3_prefetch_bucket_size: int = 50_000_000
    stage3_max_live_parameters: int = 1_000_000_000

    @classmethod
    def from_section(cls, zero: dict) -> "ZeroSettings":
        """From a ``zero_optimization`` dict; keys it does not know, and ``"auto"`` values, are DeepSpeed's."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in zero.items() if k in known and v != "auto"})

    @classmethod
    def from_ds_config(cls, path: str | Path) -> "ZeroSettings":
        try:
            zero = cls.from_section(json.loads(Path(path).read_text())["zero_optimization"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a DeepSpeed config with a zero_optimization stage ({e})") from e
        if zero.stage not in (1, 2, 3):
            raise ValueError(f"{path}: ZeRO stage {zero.stage}; the plan sizes stages 1, 2 and 3")
        return zero

    @property
    def overlaps(self) -> bool:
        return self.stage == 3 if self.overlap_comm is None else self.overlap_comm


def shipped_ds_configs() -> dict[int, dict]:
    """The repository's ds_configs/zero{1,2,3}.json where present (an editable install), else DeepSpeed's defaults."""
    here = Path(__file__).resolve().parents[1] / "ds_configs"
    return {s: json.loads(path.read_text()) if (path := here / f"zero{s}.json").exists()
            else {"zero_optimization": {"stage": s}} for s in (1, 2, 3)}


def default_zero() -> dict[int, ZeroSettings]:
    """What sizes memory in each shipped ZeRO config."""
    return {s: ZeroSettings.from_section(ds["zero_optimization"]) for s, ds in shipped_ds_configs().items()}


@dataclass
class Cluster:
    gpus_per_node: int = 16
    nodes: int = 1
    micro_batch: int = 32
    grad_accum: int = 1
    gpu_memory_gib: float = 80.0
    peak_tflops: float = 989.0  # dense bf16 per GPU (H100 SXM)
    mfu: float = 0.45
    recompute: Recompute = Recompute.FULL
    masked_fraction: float = MaskingConfig.ratio_max  # of the tokens: the worst case of the default masking
    zero: dict[int, ZeroSettings] = field(default_factory=default_zero)
    # the data (card §5-6)
    train_spectra: float = 539e6
    tokens_per_spectrum: int = 256
    epochs: int = 3

    @property
    def gpus(self) -> int:
        return self.gpus_per_node * self.nodes

    @property
    def global_batch(self) -> int:
        return self.gpus * self.micro_batch * self.grad_accum


def layer_activation_bytes(cfg: ModelConfig, micro_batch: int, seq: int) -> float:
    """One layer without recompute: ``18·s·b·h`` outside the MLP's wide tensors, the GELU's input and, unless it
    is recomputed, its output (``2·s·b·ffn`` each: ``34·s·b·h`` in all at ffn = 4h), the bf16 mask SDPA saves,
    local attention's scores."""
    s, b, h, a, f = seq, micro_batch, cfg.hidden_size, cfg.num_attention_heads, cfg.ffn_hidden_size
    scores = 5 * a * s * s * b if cfg.attention_backend == AttentionBackend.LOCAL else 0.0
    wide = 1 if cfg.recompute_gelu else 2
    return 18 * s * b * h + wide * 2 * s * b * f + 2 * b * s * s + scores


def outside_layer_bytes(cfg: ModelConfig, micro_batch: int, seq: int, masked_fraction: float) -> float:
    """Embedding (Fourier features, intensity MLP), final LayerNorm (input, output), and per masked token and
    [CLS] the head's transform (four h-wide tensors) and fp32 log-probabilities; [CLS] also its spectrum's."""
    h, bins = cfg.hidden_size, cfg.mz_bins + cfg.intensity_bins
    per_token = 4 * cfg.fourier_num_frequencies + 4 * cfg.intensity_hidden + 4 * h
    per_head_row = 8 * h + 4 * bins
    return micro_batch * (seq * (per_token + masked_fraction * per_head_row) + per_head_row + 4 * cfg.mz_bins)


def activation_bytes(cfg: ModelConfig, micro_batch: int, seq: int, recompute: Recompute,
                     masked_fraction: float = MaskingConfig.ratio_max, during_backward: bool = True) -> float:
    """Activation bytes per GPU (16-bit activations), layers and the rest; the boolean mask once.
    Selective recompute re-runs core attention, which under SDPA saves no more than its inputs and
    output: as much as none. ``during_backward``: full recompute's re-run layer and its gradients."""
    s, b, h, L = seq, micro_batch, cfg.hidden_size, cfg.num_layers
    rest = outside_layer_bytes(cfg, b, s, masked_fraction) + b * s * s
    layer = layer_activation_bytes(cfg, b, s)
    if recompute != Recompute.FULL:
        return L * layer + rest
    return L * 2 * s * b * h + rest + (2 * layer if during_backward else 0.0)


def memory_bytes(params: int, zero: ZeroSettings, dp: int, activations: float, leaf_params: int) -> dict[str, float]:
    """Per-GPU bytes of each part, the two phases' totals and the peak (see the module docstring)."""
    stage, shard = zero.stage, (lambda n: n / dp)
    parts = {"params": 2 * (shard(params) if stage >= 3 else params),
             "grads": 2 * (shard(params) if stage >= 2 else params),
             "optimizer": 12 * shard(params)}
    buckets = 2 * zero.reduce_bucket_size if zero.contiguous_gradients else 0.0
    if stage == 3:
        gathered = 0.0 if dp == 1 else 2 * min(zero.stage3_max_live_parameters,
                                                zero.stage3_prefetch_bucket_size + leaf_params)
        parts["buffers"] = buckets + gathered  # on one rank a parameter's partition is the parameter
        fp32_grads = 4 * min(zero.sub_group_size, shard(params))
    else:
        parts["buffers"] = buckets * (2 if zero.overlaps else 1)
        fp32_grads = 4 * shard(params)
    parts["activations"] = activations
    parts["step fp32 grads"] = fp32_grads
    kept = parts["params"] + parts["optimizer"]
    parts["forward/backward"] = kept + parts["buffers"] + activations + (parts["grads"] if stage == 3 else 0.0)
    parts["step"] = kept + parts["grads"] + fp32_grads + (parts["buffers"] if stage == 3 else 0.0)
    parts["total"] = max(parts["forward/backward"], parts["step"])
    return parts


def plan(cfg: ModelConfig, cluster: Cluster) -> dict:
    count = count_parameters(cfg)
    n = count.total
    seq = cfg.max_peaks + 2
    steps_per_epoch = cluster.train_spectra / cluster.global_batch
    total_steps = steps_per_epoch * cluster.epochs
    step_flops = 3 * forward_flops(cfg, cluster.global_batch, seq)
    total_flops = step_flops * total_steps
    seconds = total_flops / (cluster.gpus * cluster.peak_tflops * 1e12 * cluster.mfu)
    act = activation_bytes(cfg, cluster.micro_batch, seq, cluster.recompute, cluster.masked_fraction)
    memory = {}
    for stage in (1, 2, 3):
        parts = memory_bytes(n, cluster.zero[stage], cluster.gpus, act, layer_parameters_formula(cfg))
        memory[stage] = {**{k: v / GiB for k, v in parts.items()},
                         "fits": parts["total"] / GiB <= 0.9 * cluster.gpu_memory_gib}
    return {
        "parameters": n, "tokens_per_epoch": cluster.train_spectra * cluster.tokens_per_spectrum,
        "global_batch": cluster.global_batch, "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
        "flops_total": total_flops, "flops_6ND": 6 * n * cluster.train_spectra * cluster.tokens_per_spectrum * cluster.epochs,
        "days": seconds / 86400, "memory_gib": memory,
        "zero_stage": next((s for s in (1, 2, 3) if memory[s]["fits"]), None),
    }


def render(name: str, cfg: ModelConfig, cluster: Cluster, p: dict) -> str:
    lines = [f"{name}: {p['parameters']:,} parameters ({p['parameters'] / 1e9:.2f} B)",
             f"  cluster: {cluster.nodes} node(s) x {cluster.gpus_per_node} GPUs, micro-batch {cluster.micro_batch}, "
             f"accumulation {cluster.grad_accum} -> global batch {p['global_batch']}; recompute {cluster.recompute.value}",
             f"  data: {cluster.train_spectra:,.0f} spectra x {cluster.tokens_per_spectrum} tokens = "
             f"{p['tokens_per_epoch']:.3g} tokens/epoch; {p['steps_per_epoch']:,.0f} steps/epoch, "
             f"{p['total_steps']:,.0f} steps for {cluster.epochs} epochs",
             f"  compute: {p['flops_total']:.3g} FLOPs (6·N·D gives {p['flops_6ND']:.3g}); at an assumed {cluster.mfu:.0%} "
             f"MFU of {cluster.peak_tflops:.0f} TFLOP/s per GPU: {p['days']:.1f} days (the step time below predicts it)",
             "  memory per GPU (GiB):   params  grads  optimizer  buffers  activations  step-fp32  "
             f"fwd/bwd    step    peak  fits {cluster.gpu_memory_gib:.0f} GiB?"]
    for stage, m in p["memory_gib"].items():
        lines.append(f"    ZeRO-{stage}             {m['params']:7.1f} {m['grads']:6.1f} {m['optimizer']:10.1f} "
                     f"{m['buffers']:8.1f} {m['activations']:12.1f} {m['step fp32 grads']:10.1f} "
                     f"{m['forward/backward']:8.1f} {m['step']:7.1f} {m['total']:7.1f}  {'yes' if m['fits'] else 'no'}")
    best = p["zero_stage"]
    lines.append(f"  memory: {'ZeRO-%d is the lowest stage that fits (90%% of memory)' % best if best else 'nothing fits: more GPUs, a smaller micro-batch or recompute'}")
    return "\n".join(lines)
