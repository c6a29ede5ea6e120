"""Heads on a spectrum embedding: fingerprint bits (multi-label), and heteroscedastic regression
(mean and variance, Gaussian NLL) with an optional group embedding (the LC system, for RT)."""
import torch
from torch import nn


class FingerprintHead(nn.Module):
    def __init__(self, in_dim: int, n_bits: int, hidden: int = 512, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_bits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # logits


class GaussianHead(nn.Module):
    """Predicts (mean, log variance); ``groups`` > 0 adds a learned embedding of the group id."""

    def __init__(self, in_dim: int, hidden: int = 256, groups: int = 0, group_dim: int = 16):
        super().__init__()
        self.group = nn.Embedding(groups, group_dim) if groups else None
        self.net = nn.Sequential(nn.Linear(in_dim + (group_dim if groups else 0), hidden), nn.GELU(),
                                 nn.Linear(hidden, 2))

    def forward(self, x: torch.Tensor, group: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.group is not None:
            x = torch.cat([x, self.group(group)], dim=-1)
        mean, log_var = self.net(x).unbind(-1)
        return mean, log_var.clamp(-10, 10)
