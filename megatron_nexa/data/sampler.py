"""Deterministic, resumable, data-parallel sampling with O(1) memory.

The sample stream is epoch 0's permutation of ``[0, N)``, then epoch 1's, … (each a keyed Feistel
bijection, computed on the fly, so 539 M samples need no index array). Global batches are consecutive
windows of that stream; rank r takes micro-batch slot r of each. Hence:
- every sample appears exactly once per epoch, and ranks never overlap;
- the position after ``consumed_samples`` is all the state there is: resuming there yields exactly the
  batches an uninterrupted run would have seen;
- a different number of ranks on resume continues the *same* global sample stream (each global batch
  is just split differently), so it is allowed; the engine decides whether its own state can follow.
Items are ``(stream_index, kind)``: ``stream_index = epoch · N + sample``; ``kind`` says what the row
becomes (single masked spectrum, retention-order pair, contrastive view), fixed by its slot.
"""
import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from megatron_nexa.data.mixing import GOLDEN, mix64



class Kind(IntEnum):
    SINGLE = 0
    PAIR = 1
    VIEWS = 2


def feistel_permute(x: np.ndarray, n: int, key: int, rounds: int = 4) -> np.ndarray:
    """A keyed bijection of ``[0, n)`` applied to ``x`` (balanced Feistel network + cycle walking)."""
    half = max(1, math.ceil(math.log2(max(n, 2)) / 2))
    mask = np.uint64((1 << half) - 1)
    keys = mix64(np.arange(1, rounds + 1, dtype=np.uint64) * GOLDEN + np.uint64(key % 2**64))
    y = np.asarray(x, dtype=np.uint64).copy()
    with np.errstate(over="ignore"):
        todo = np.ones(len(y), bool)
        while todo.any():
            v = y[todo]
            left, right = v >> np.uint64(half), v & mask
            for k in keys:
                left, right = right, left ^ (mix64(right * GOLDEN + k) & mask)
            y[todo] = (left << np.uint64(half)) | right
            todo = y >= np.uint64(n)  # outside [0, n): walk the cycle until back inside
    return y.astype(np.int64)


def epoch_order(positions: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Stream positions → stream indices ``epoch · n + permuted sample``."""
    positions = np.asarray(positions, dtype=np.int64)
    epoch, offset = np.divmod(positions, n)
    out = np.empty_like(positions)
    for e in np.unique(epoch):
        sel = epoch == e
        out[sel] = e * n + feistel_permute(offset[sel], n, key=seed * 1_000_003 + int(e))
    return out


@dataclass
class PretrainingSampler:
    """Yields this rank's micro-batches forever, starting after ``consumed_samples`` (global)."""

    num_samples: int
    micro_batch_size: int
    dp_rank: int = 0
    dp_size: int = 1
    seed: int = 0
    consumed_samples: int = 0
    pair_fraction: float = 0.0
    view_fraction: float = 0.0
    shuffle: bool = True

    def __post_init__(self):
        if self.num_samples < 1:
            raise ValueError("sampler: the dataset is empty")
        if not 0 <= self.dp_rank < self.dp_size:
            raise ValueError(f"sampler: dp_rank {self.dp_rank} outside [0, {self.dp_size})")
        n_pair = int(round(self.pair_fraction * self.micro_batch_size))
        n_view = int(round(self.view_fraction * self.micro_batch_size))
        n_view = min(n_view, self.micro_batch_size - n_pair)
        self.kinds = [Kind.PAIR] * n_pair + [Kind.VIEWS] * n_view + [Kind.SINGLE] * (
            self.micro_batch_size - n_pair - n_view)

    @property
    def global_batch(self) -> int:
        return self.micro_batch_size * self.dp_size

    def micro_batch(self, position: int) -> list[tuple[int, int]]:
        """The micro-batch whose first stream position is ``position``."""
        positions = np.arange(position, position + self.micro_batch_size)
        if self.shuffle:
            indices = epoch_order(positions, self.num_samples, self.seed)
        else:
            indices = positions
        return [(int(i), int(k)) for i, k in zip(indices, self.kinds)]

    def __iter__(self):
        position = self.consumed_samples + self.dp_rank * self.micro_batch_size
        while True:
            yield self.micro_batch(position)
            position += self.global_batch
