"""Peak token embeddings: Fourier m/z features, an intensity MLP and a token-type embedding.

m/z: ``sin/cos(2π·m/z/p)`` for ``fourier_num_frequencies`` periods ``p`` log-spaced from
``fourier_min_period`` (1e-3 Da: resolves the mass defect that separates elemental formulas) to
``fourier_max_period`` (1e3 Da: a unique phase over the whole 0–2000 m/z range), then a linear map to
``d_model``. This is the DreaMS/transformer-position recipe applied to mass. The phase is taken in
float64: at m/z 1000 and p = 1e-3 the angle is ~6e6 rad, where float32 steps by 0.5 rad.

Intensity (relative to the base peak) goes through a small MLP. ``[PREC]`` carries the precursor m/z
but no intensity; ``[MASK]`` carries neither, only its type embedding; ``[CLS]``/``[SEP]``/padding carry
their type embedding alone.
"""
import math

import torch
from torch import nn

from megatron_nexa.config import ModelConfig
from megatron_nexa.tokens import NUM_TOKEN_TYPES, TokenType


def fourier_frequencies(cfg: ModelConfig, device: torch.device | str | None = None) -> torch.Tensor:
    """Frequencies in cycles per Da (float64), highest period first."""
    periods = torch.logspace(math.log10(cfg.fourier_max_period), math.log10(cfg.fourier_min_period),
                             cfg.fourier_num_frequencies, dtype=torch.float64, device=device)
    return 1.0 / periods


class SpectrumEmbedding(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.mz_proj = nn.Linear(2 * cfg.fourier_num_frequencies, cfg.hidden_size)
        self.intensity_mlp = nn.Sequential(
            nn.Linear(1, cfg.intensity_hidden), nn.GELU(), nn.Linear(cfg.intensity_hidden, cfg.hidden_size)
        )
        self.token_type = nn.Embedding(NUM_TOKEN_TYPES, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.hidden_dropout)
        for linear in (self.mz_proj, self.intensity_mlp[0], self.intensity_mlp[2]):
            nn.init.normal_(linear.weight, std=cfg.init_method_std)
            nn.init.zeros_(linear.bias)
        nn.init.normal_(self.token_type.weight, std=cfg.init_method_std)

    def fourier_features(self, mz: torch.Tensor) -> torch.Tensor:
        # Rebuilt per call, not held as a buffer: `.to(bfloat16)` and ZeRO-3 init cast floating
        # buffers, which would ruin the float64 frequencies. It is 256 numbers, made on mz's device
        # (a host-to-device copy here would stall the CPU until the GPU drains, every step).
        freqs = fourier_frequencies(self.cfg, mz.device)
        phase = torch.frac(mz.to(torch.float64)[..., None] * freqs) * (2 * math.pi)
        return torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1)

    def forward(self, token_type: torch.Tensor, mz: torch.Tensor, intensity: torch.Tensor) -> torch.Tensor:
        dtype = self.mz_proj.weight.dtype
        has_mz = ((token_type == TokenType.PEAK.value) | (token_type == TokenType.PREC.value)).unsqueeze(-1)
        has_intensity = (token_type == TokenType.PEAK.value).unsqueeze(-1)
        mz_emb = self.mz_proj(self.fourier_features(mz).to(dtype))
        int_emb = self.intensity_mlp(intensity.to(dtype).unsqueeze(-1))
        x = self.token_type(token_type) + mz_emb * has_mz + int_emb * has_intensity
        return self.dropout(x)
