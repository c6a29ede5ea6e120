"""The model's FLOPs, one formula for the plan (``cluster_plan``) and the training monitor's MFU (``engine.monitor``),
so that the engine need not import the planner."""
from megatron_nexa.config import ModelConfig


def forward_flops(cfg: ModelConfig, rows: int, seq: int) -> float:
    """Per forward pass: 2·b·s·(4h² + 2h·ffn) + 4·b·s²·h per layer (the GPU issue's count)."""
    h, f = cfg.hidden_size, cfg.ffn_hidden_size
    return cfg.num_layers * (2 * rows * seq * (4 * h * h + 2 * h * f) + 4 * rows * seq * seq * h)
