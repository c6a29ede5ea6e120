"""Synthetic token batches for model tests (the real tokeniser lives in data/)."""
import numpy as np
import torch

from megatron_nexa.config import LossConfig
from megatron_nexa.tokens import TokenType

ALL_TERMS = LossConfig(masked_mz=1.0, masked_intensity=1.0, retention_order=1.0, contrastive=1.0, cls_spectrum=1.0)


def spectrum_tokens(rng: np.random.Generator, n_peaks: int, length: int, precursor: float = 400.0):
    """``[CLS] [PREC] peaks… PAD…`` as (token_type, mz, intensity, segment) 1-D tensors."""
    mz = np.sort(rng.uniform(50, precursor, n_peaks))
    inten = rng.uniform(0.01, 1.0, n_peaks)
    tt = [TokenType.CLS, TokenType.PREC] + [TokenType.PEAK] * n_peaks
    mzs = [0.0, precursor] + list(mz)
    ints = [0.0, 0.0] + list(inten)
    return _pad(tt, mzs, ints, [0] * len(tt), length)


def pair_tokens(rng: np.random.Generator, n_a: int, n_b: int, length: int):
    """``[CLS] [PREC] peaks_A [SEP] [PREC] peaks_B PAD…``."""
    a = np.sort(rng.uniform(50, 400, n_a))
    b = np.sort(rng.uniform(50, 400, n_b))
    tt = [TokenType.CLS, TokenType.PREC] + [TokenType.PEAK] * n_a + [TokenType.SEP, TokenType.PREC] + [TokenType.PEAK] * n_b
    mzs = [0.0, 410.0] + list(a) + [0.0, 420.0] + list(b)
    ints = [0.0, 0.0] + list(rng.uniform(0.01, 1, n_a)) + [0.0, 0.0] + list(rng.uniform(0.01, 1, n_b))
    seg = [0] * (n_a + 3) + [1] * (n_b + 1)
    return _pad(tt, mzs, ints, seg, length)


def _pad(tt, mzs, ints, seg, length):
    pad = length - len(tt)
    assert pad >= 0
    return (torch.tensor([int(t) for t in tt] + [TokenType.PAD] * pad),
            torch.tensor(mzs + [0.0] * pad, dtype=torch.float32),
            torch.tensor(ints + [0.0] * pad, dtype=torch.float32),
            torch.tensor(seg + [0] * pad))


def batch(samples):
    return tuple(torch.stack(parts) for parts in zip(*samples))


def random_batch(seed: int, b: int = 3, length: int = 24, max_peaks: int = 20):
    rng = np.random.default_rng(seed)
    return batch([spectrum_tokens(rng, int(rng.integers(1, max_peaks + 1)), length) for _ in range(b)])


def mixed_batch(cfg):
    """Row 0 a joined pair, rows 1/2 a separate pair, rows 3/4 and 5/6 two views each, row 7 a single."""
    from megatron_nexa.testing import synthetic_batch

    base = synthetic_batch(cfg, 8)
    return base.replace(is_pair=torch.tensor([True] + [False] * 7), ro_group=torch.tensor([-1, 11, 11, -1, -1, -1, -1, -1]),
                        view_group=torch.tensor([-1, -1, -1, 3, 3, 5, 5, -1]),
                        ro_label=torch.tensor([1.0, 0.0, 0.0, 0, 0, 0, 0, 0]))
