"""Encoder + pretraining heads. The encoder is either ``NexaEncoder`` (megatron-core, training) or
``ReferenceEncoder`` (plain PyTorch, export): both take the same state dict."""
from typing import NamedTuple

import torch
from torch import nn

from megatron_nexa.config import ModelConfig
from megatron_nexa.model.heads import ContrastiveHead, MaskedPeakHead, RetentionOrderHead
from megatron_nexa.tokens import masked_positions


class PretrainingOutput(NamedTuple):
    """A NamedTuple, so DeepSpeed ZeRO-3's module hooks can see the tensors inside."""

    hidden: torch.Tensor  # [b, s, h]
    cls: torch.Tensor  # [b, h]
    mz_logits: torch.Tensor  # [n_masked, mz_bins], masked tokens in row-major order
    intensity_logits: torch.Tensor  # [n_masked, intensity_bins]
    retention_logit: torch.Tensor  # [b]
    contrastive: torch.Tensor  # [b, contrastive_dim], unit norm
    cls_mz_logits: torch.Tensor  # [b, mz_bins]: the masked-peak m/z classifier applied to [CLS]


class NexaSpecForPretraining(nn.Module):
    def __init__(self, cfg: ModelConfig, encoder: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        self.masked_peak = MaskedPeakHead(cfg)
        self.retention_order = RetentionOrderHead(cfg)
        self.contrastive = ContrastiveHead(cfg)

    def forward(self, token_type: torch.Tensor, mz: torch.Tensor, intensity: torch.Tensor,
                segment: torch.Tensor, masked_index: torch.Tensor | None = None) -> PretrainingOutput:
        """``masked_index``: flat positions of the [MASK] tokens (``Batch.masked_index``, found on the host).
        Without it they are found here, and on a GPU the host then waits for ``token_type`` to be read."""
        if masked_index is None:
            masked_index = masked_positions(token_type)
        hidden = self.encoder(token_type, mz, intensity, segment)
        cls = hidden[:, 0]
        masked = hidden.reshape(-1, hidden.shape[-1]).index_select(0, masked_index)
        # one call for masked tokens and [CLS] (ZeRO-3 fetches a leaf's parameters once per forward)
        mz_logits, intensity_logits = self.masked_peak(torch.cat([masked, cls]))
        n = len(masked)
        return PretrainingOutput(hidden, cls, mz_logits[:n], intensity_logits[:n], self.retention_order(cls),
                                 self.contrastive(cls), mz_logits[n:])
