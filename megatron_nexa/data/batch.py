"""The one batch type: everything the encoder and the losses need, as tensors."""
from dataclasses import dataclass, fields

import numpy as np
import torch


@dataclass
class Batch:
    token_type: torch.Tensor  # [B, L] int64 (megatron_nexa.tokens.TokenType)
    mz: torch.Tensor  # [B, L] float32; 0 where hidden
    intensity: torch.Tensor  # [B, L] float32
    segment: torch.Tensor  # [B, L] int64; 1 for the second spectrum of a pair
    mz_target: torch.Tensor  # [B, L] int64; IGNORE (-100) except at masked tokens
    intensity_target: torch.Tensor  # [B, L] int64
    peak_bin: torch.Tensor  # [B, L] int64: m/z bin of every peak, masked or not; IGNORE elsewhere
    peak_weight: torch.Tensor  # [B, L] float32: sqrt(relative intensity) of every peak, masked or not
    is_pair: torch.Tensor  # [B] bool: a [SEP]-joined retention-order pair
    ro_label: torch.Tensor  # [B] float32: 1.0 if A elutes before B (where is_pair or ro_group >= 0)
    view_group: torch.Tensor  # [B] int64: rows sharing a value >= 0 are two views of one spectrum
    ro_group: torch.Tensor  # [B] int64: rows sharing a value >= 0 are spectra A then B of a separate pair
    sample_index: torch.Tensor  # [B] int64: stream index of the row (for tracing)
    source: torch.Tensor  # [B] int64: which blended source the spectra come from
    spectra: torch.Tensor  # [B, 2] int64: the row's spectrum (A of a joined pair) and its RO partner, else -1

    def to(self, device, non_blocking: bool = True) -> "Batch":
        return Batch(**{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)})

    def model_inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.token_type, self.mz, self.intensity, self.segment

    def __len__(self) -> int:
        return self.token_type.shape[0]


def collate(items: list[list[dict]]) -> Batch:
    """Items (each a list of rows: one, or two for contrastive views or a separate pair) → one Batch."""
    rows = [row for item in items for row in item]
    return Batch(**{f.name: torch.from_numpy(np.stack([r[f.name] for r in rows])) for f in fields(Batch)})
