"""The one batch type: everything the encoder and the losses need, as tensors."""
import dataclasses
from dataclasses import dataclass, fields

import numpy as np
import torch

from megatron_nexa.tokens import masked_positions


def grouped_pairs(group: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices (first, second) of the rows sharing each value >= 0 of ``group``, in row order within a
    group (contrastive views; A then B of a separate retention-order pair)."""
    rows = torch.nonzero(group >= 0).flatten()
    rows = rows[torch.argsort(group[rows], stable=True)]
    first, second = rows[0::2], rows[1::2]
    if len(first) != len(second) or not torch.equal(group[first], group[second]):
        raise ValueError(f"{name} must hold each value on exactly two rows, got {group[rows].tolist()}")
    return first, second


INDEX_FIELDS = ("masked_index", "pair_rows", "ro_first", "ro_second", "view_first", "view_second", "cls_rows")


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
    # Where the model and the losses find their tokens and rows: computed once on the host (``__post_init__``),
    # because finding them from GPU tensors (a boolean index, ``nonzero``) makes the host wait for the GPU.
    masked_index: torch.Tensor | None = None  # [M] int64: flat (row-major) positions of the [MASK] tokens
    pair_rows: torch.Tensor | None = None  # [P]: rows holding a [SEP]-joined retention-order pair
    ro_first: torch.Tensor | None = None  # [Q]: rows of spectrum A of each separate retention-order pair ...
    ro_second: torch.Tensor | None = None  # [Q]: ... and of its spectrum B
    view_first: torch.Tensor | None = None  # [V]: rows of the first view of each contrastive pair ...
    view_second: torch.Tensor | None = None  # [V]: ... and of the second
    cls_rows: torch.Tensor | None = None  # [C]: single-spectrum rows with peaks (the [CLS] spectrum target)

    def __post_init__(self):
        """Indices passed in are kept (``to``, ``pin_memory``). Do not edit fields in place: ``replace``."""
        if self.masked_index is not None:
            return
        self.masked_index = masked_positions(self.token_type)
        self.pair_rows = torch.nonzero(self.is_pair).flatten()
        self.ro_first, self.ro_second = grouped_pairs(self.ro_group, "retention order: ro_group")
        self.view_first, self.view_second = grouped_pairs(self.view_group, "contrastive: view_group")
        self.cls_rows = torch.nonzero(~self.is_pair & (self.peak_weight.sum(-1) > 0)).flatten()

    def at_masked(self, per_token: torch.Tensor) -> torch.Tensor:
        """A [B, S] per-token tensor's values at the [MASK] tokens, in the masked-peak logits' order."""
        return per_token.flatten().index_select(0, self.masked_index)

    def replace(self, **changes) -> "Batch":
        """A copy with ``changes`` and its indices computed again."""
        return dataclasses.replace(self, **changes, **dict.fromkeys(INDEX_FIELDS))

    def _map(self, fn) -> "Batch":
        return Batch(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, device, non_blocking: bool = True) -> "Batch":
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "Batch":
        """Called by the DataLoader (``pin_memory=True``): from page-locked memory the copy to the GPU in
        ``to(non_blocking=True)`` is asynchronous; from pageable memory the host waits for it."""
        return self._map(torch.Tensor.pin_memory)

    def model_inputs(self) -> tuple[torch.Tensor, ...]:
        """``NexaSpecForPretraining``'s positional inputs."""
        return self.token_type, self.mz, self.intensity, self.segment, self.masked_index

    def encoder_inputs(self) -> tuple[torch.Tensor, ...]:
        return self.token_type, self.mz, self.intensity, self.segment

    def __len__(self) -> int:
        return self.token_type.shape[0]


def collate(items: list[list[dict]]) -> Batch:
    """Items (each a list of rows: one, or two for contrastive views or a separate pair) → one Batch."""
    rows = [row for item in items for row in item]
    return Batch(**{f.name: torch.from_numpy(np.stack([r[f.name] for r in rows])) for f in fields(Batch)
                    if f.name not in INDEX_FIELDS})
