"""Synthetic token batches for model tests (the real tokeniser lives in data/)."""
import numpy as np
import torch

from megatron_nexa.tokens import TokenType


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
