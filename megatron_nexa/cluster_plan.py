"""The 3B → 7B plan as numbers: tokens, steps, FLOPs, per-GPU memory under ZeRO-1/2/3, days to train.

Memory per GPU, bf16 training with an fp32 master copy and AdamW (DeepSpeed's layout):
  parameters 2 B/param, gradients 2 B/param, optimiser 16 B/param (fp32 master, the fp32 gradient
  partition DeepSpeed's bf16 optimisers keep beside it, two Adam moments; measured on an H100, see
  benchmarks/RESULTS.md: with 12 B the plan fell 6-29 % short of the measured peaks);
  ZeRO-1 shards the optimiser, ZeRO-2 also the gradients, ZeRO-3 also the parameters, over the
  data-parallel ranks. ZeRO-3 additionally holds the gathered parameters of the layers in flight
  (about two layers, prefetch included).
Activations per layer (Korthikanti et al., "Reducing Activation Recomputation in Large Transformer
Models", the formula Megatron-LM uses): ``s·b·h·(34 + 5·a·s/h)`` bytes without recompute (the s² term
only for megatron's local attention); ``34·s·b·h`` with selective recompute; with full recompute only
each layer's input ``2·s·b·h`` is kept, plus one layer's full activations during its backward.
``activation_bytes`` is checked against the tensors autograd really saves, on a small config in bf16
(tests/unit/test_cluster_plan.py).
"""
from dataclasses import dataclass

from megatron_nexa.config import AttentionBackend, ModelConfig, Recompute
from megatron_nexa.plan import count_parameters

GiB = 2**30


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


def forward_flops(cfg: ModelConfig, rows: int, seq: int) -> float:
    """Per forward pass: 2·b·s·(4h² + 2h·ffn) + 4·b·s²·h per layer (the GPU issue's count)."""
    h, f = cfg.hidden_size, cfg.ffn_hidden_size
    return cfg.num_layers * (2 * rows * seq * (4 * h * h + 2 * h * f) + 4 * rows * seq * seq * h)


def activation_bytes(cfg: ModelConfig, micro_batch: int, seq: int, recompute: Recompute,
                     during_backward: bool = True) -> float:
    """Activation bytes per GPU (16-bit activations). Our default SDPA attention keeps no s² score
    matrix (its kernels recompute scores), so the ``5·a·s²·b`` term only applies to megatron's local
    attention. The boolean spectral mask (``b·s²`` bytes) is kept once. With full recompute, the layer
    being recomputed in the backward pass adds one layer's activations (``during_backward``)."""
    s, b, h, a, L = seq, micro_batch, cfg.hidden_size, cfg.num_attention_heads, cfg.num_layers
    scores = 5 * a * s / h if cfg.attention_backend == AttentionBackend.LOCAL else 0.0
    full_layer = s * b * h * (34 + scores)
    mask = b * s * s
    if recompute == Recompute.NONE:
        return L * full_layer + mask
    if recompute == Recompute.SELECTIVE:
        return L * 34 * s * b * h + mask
    return L * 2 * s * b * h + mask + (full_layer if during_backward else 0.0)


def model_state_bytes(params: int, stage: int, dp: int) -> dict[str, float]:
    shard = {"params": stage >= 3, "grads": stage >= 2, "optimizer": stage >= 1}
    per_param = {"params": 2, "grads": 2, "optimizer": 16}
    return {k: params * per_param[k] / (dp if shard[k] else 1) for k in per_param}


def plan(cfg: ModelConfig, cluster: Cluster) -> dict:
    count = count_parameters(cfg)
    n = count.total
    seq = cfg.max_peaks + 2
    steps_per_epoch = cluster.train_spectra / cluster.global_batch
    total_steps = steps_per_epoch * cluster.epochs
    step_flops = 3 * forward_flops(cfg, cluster.global_batch, seq)
    total_flops = step_flops * total_steps
    seconds = total_flops / (cluster.gpus * cluster.peak_tflops * 1e12 * cluster.mfu)
    act = activation_bytes(cfg, cluster.micro_batch, seq, cluster.recompute)
    layer_params = 12 * cfg.hidden_size ** 2 + 13 * cfg.hidden_size
    memory = {}
    for stage in (1, 2, 3):
        parts = model_state_bytes(n, stage, cluster.gpus)
        parts["activations"] = act
        parts["zero3 working set"] = 2 * 2 * layer_params if stage == 3 else 0.0
        total = sum(parts.values())
        memory[stage] = {**{k: v / GiB for k, v in parts.items()}, "total": total / GiB,
                         "fits": total / GiB <= 0.9 * cluster.gpu_memory_gib}
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
             f"  compute: {p['flops_total']:.3g} FLOPs (6·N·D gives {p['flops_6ND']:.3g}); at {cluster.mfu:.0%} MFU of "
             f"{cluster.peak_tflops:.0f} TFLOP/s per GPU: {p['days']:.1f} days",
             "  memory per GPU (GiB):   params  grads  optimizer  activations  zero3-work   total  fits "
             f"{cluster.gpu_memory_gib:.0f} GiB?"]
    for stage, m in p["memory_gib"].items():
        lines.append(f"    ZeRO-{stage}             {m['params']:7.1f} {m['grads']:6.1f} {m['optimizer']:10.1f} "
                     f"{m['activations']:12.1f} {m['zero3 working set']:11.1f} {m['total']:7.1f}  {'yes' if m['fits'] else 'no'}")
    best = p["zero_stage"]
    lines.append(f"  -> {'ZeRO-%d is the lowest stage that fits (90%% of memory)' % best if best else 'nothing fits: more GPUs, a smaller micro-batch or recompute'}")
    return "\n".join(lines)
