"""Pretraining heads (model card §4): masked peak, retention order, contrastive projection.

Each is ``gathered_whole``: a parameter-sharding engine fetches its parameters in one go, as one ZeRO-3 leaf
module (docs/decisions/0002-layer-sized-leaf-modules.md); the engine reads the flag, the model only declares it.
"""
import torch
import torch.nn.functional as F
from torch import nn

from megatron_nexa.config import ModelConfig


def _init(module: nn.Module, std: float) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            nn.init.zeros_(m.bias)


class MaskedPeakHead(nn.Module):
    """Hidden state of a ``[MASK]`` token → logits over m/z bins and over intensity bins."""

    gathered_whole = True

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(cfg.hidden_size, cfg.hidden_size), nn.GELU(),
                                       nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_epsilon))
        self.mz = nn.Linear(cfg.hidden_size, cfg.mz_bins)
        self.intensity = nn.Linear(cfg.hidden_size, cfg.intensity_bins)
        _init(self, cfg.init_method_std)

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.transform(hidden)
        return self.mz(h), self.intensity(h)


class RetentionOrderHead(nn.Module):
    """``[CLS]`` of a ``[SEP]``-joined pair → logit of "A elutes before B"."""

    gathered_whole = True

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cfg.hidden_size, cfg.hidden_size), nn.Tanh(),
                                 nn.Linear(cfg.hidden_size, 1))
        _init(self, cfg.init_method_std)

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        return self.net(cls).squeeze(-1)


class ContrastiveHead(nn.Module):
    """``[CLS]`` → unit-norm projection for InfoNCE (SimCLR-style MLP projector)."""

    gathered_whole = True

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cfg.hidden_size, cfg.hidden_size), nn.GELU(),
                                 nn.Linear(cfg.hidden_size, cfg.contrastive_dim))
        _init(self, cfg.init_method_std)

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(cls), dim=-1)
