"""Spectra → fixed-length token rows: ``[CLS] [PREC] peaks…`` or ``[CLS] [PREC] A [SEP] [PREC] B``.

Every row has the model's length ``max_peaks + 2``; a pair keeps at most ``(max_peaks - 2) // 2`` peaks
of each spectrum (the most intense, back in m/z order) so it fits the same length.
"""
from dataclasses import dataclass

import numpy as np
import torch

from megatron_nexa.data.peak_selection import most_intense
from megatron_nexa.tokens import TokenType


@dataclass
class Row:
    token_type: np.ndarray  # int64 [L]
    mz: np.ndarray  # float32 [L]
    intensity: np.ndarray  # float32 [L]
    segment: np.ndarray  # int64 [L]


def row_length(max_peaks: int) -> int:
    return max_peaks + 2


def pair_peaks(max_peaks: int) -> int:
    return (max_peaks - 2) // 2


def top_peaks(mz: np.ndarray, inten: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most intense peaks (ties: ``data.peak_selection``'s rule), in m/z order (inputs are m/z-sorted)."""
    if len(mz) <= k:
        return mz, inten
    keep = most_intense(inten[None], mz[None], k)[0]
    return mz[keep], inten[keep]


def _empty(length: int) -> Row:
    return Row(np.full(length, TokenType.PAD, np.int64), np.zeros(length, np.float32),
               np.zeros(length, np.float32), np.zeros(length, np.int64))


def single_row(mz, inten, precursor: float, max_peaks: int) -> Row:
    mz, inten = top_peaks(mz, inten, max_peaks)
    row = _empty(row_length(max_peaks))
    n = len(mz)
    row.token_type[0], row.token_type[1], row.token_type[2:2 + n] = TokenType.CLS, TokenType.PREC, TokenType.PEAK
    row.mz[1], row.mz[2:2 + n], row.intensity[2:2 + n] = precursor, mz, inten
    return row


def pair_row(a: tuple, b: tuple, max_peaks: int) -> Row:
    """``a``/``b``: (mz, intensity, precursor) of the spectra; B is segment 1."""
    k = pair_peaks(max_peaks)
    (amz, aint), (bmz, bint) = top_peaks(a[0], a[1], k), top_peaks(b[0], b[1], k)
    row = _empty(row_length(max_peaks))
    na, nb = len(amz), len(bmz)
    sep = 2 + na
    row.token_type[:2] = TokenType.CLS, TokenType.PREC
    row.token_type[2:sep] = TokenType.PEAK
    row.token_type[sep], row.token_type[sep + 1] = TokenType.SEP, TokenType.PREC
    row.token_type[sep + 2:sep + 2 + nb] = TokenType.PEAK
    row.mz[1], row.mz[2:sep], row.intensity[2:sep] = a[2], amz, aint
    row.mz[sep + 1], row.mz[sep + 2:sep + 2 + nb], row.intensity[sep + 2:sep + 2 + nb] = b[2], bmz, bint
    row.segment[sep + 1:sep + 2 + nb] = 1
    return row


def stack_rows(rows: list[Row]) -> tuple[torch.Tensor, ...]:
    """Rows → the encoder's inputs ``(token_type, mz, intensity, segment)``, each ``[len(rows), L]``."""
    return tuple(torch.from_numpy(np.stack([getattr(r, f) for r in rows]))
                 for f in ("token_type", "mz", "intensity", "segment"))
