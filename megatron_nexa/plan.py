"""Exact model size, counted on the meta device (no memory, no megatron-core, no process group).

The plain-PyTorch reference has exactly the parameters of the megatron-core model (a test builds both
for ``tiny``/``small`` and compares), so it is what we count.
"""
from dataclasses import dataclass

import torch

from megatron_nexa.config import ModelConfig
from megatron_nexa.model.pretraining import NexaSpecForPretraining
from megatron_nexa.model.reference import ReferenceEncoder


@dataclass
class ParameterCount:
    embedding: int
    transformer: int
    heads: int

    @property
    def encoder(self) -> int:
        return self.embedding + self.transformer

    @property
    def total(self) -> int:
        return self.encoder + self.heads


def count_parameters(cfg: ModelConfig) -> ParameterCount:
    with torch.device("meta"):
        model = NexaSpecForPretraining(cfg, ReferenceEncoder(cfg))

    def n(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    return ParameterCount(embedding=n(model.encoder.embedding), transformer=n(model.encoder.transformer),
                          heads=n(model) - n(model.encoder))


def layer_parameters_formula(cfg: ModelConfig) -> int:
    """Closed form of one layer: QKV + proj + FC1 + FC2 (with their biases if ``linear_bias``), two LayerNorms."""
    h, f = cfg.hidden_size, cfg.ffn_hidden_size
    biases = (3 * h + h + f + h) if cfg.linear_bias else 0
    return 3 * h * h + h * h + h * f + f * h + biases + 4 * h


def transformer_parameters_formula(cfg: ModelConfig) -> int:
    """Every layer, plus the final LN."""
    return cfg.num_layers * layer_parameters_formula(cfg) + 2 * cfg.hidden_size
