"""AdamW with the card's settings, and linear warmup followed by cosine decay (card §6.4)."""
import math

import torch

from megatron_nexa.config import OptimConfig
from megatron_nexa.model.weight_decay import param_groups


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                             eps=cfg.eps, fused=torch.cuda.is_available())


def warmup_cosine(step: int, warmup: int, total: int, peak: float, floor: float) -> float:
    """peak·(step+1)/warmup during warmup, then cosine from peak down to floor at ``total``."""
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


class WarmupCosine:
    """lr(step) = scale x (peak·step/warmup during warmup, then cosine from peak to min_lr at total_steps).

    ``scale`` starts at 1 and is lowered after non-finite steps; it is part of the state dict.
    """

    def __init__(self, optimizer, cfg: OptimConfig, total_steps: int):
        self.optimizer, self.cfg, self.total = optimizer, cfg, total_steps
        self.step_count, self.scale = 0, 1.0
        self._apply()

    def lr_at(self, step: int) -> float:
        c = self.cfg
        return warmup_cosine(step, c.warmup_steps, self.total, c.lr, c.min_lr) * self.scale

    def _apply(self):
        lr = self.lr_at(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self, *args, **kwargs):
        self.step_count += 1
        self._apply()

    def lower(self, factor: float):
        self.scale *= factor
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [self.lr_at(self.step_count)]

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "scale": self.scale}

    def load_state_dict(self, state: dict):
        self.step_count, self.scale = state["step_count"], state["scale"]
        self._apply()
