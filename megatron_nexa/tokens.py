"""The token vocabulary shared by data/ (which writes it) and model/ (which reads it).

A spectrum becomes ``[CLS] [PREC] peak_1 … peak_n`` (peaks sorted by m/z); a retention-order pair is
``[CLS] [PREC] peaks_A [SEP] [PREC] peaks_B``. ``segment`` says which spectrum a token belongs to
(``[CLS]`` is segment 0, ``[SEP]`` closes spectrum A so it is segment 0 too).
"""
from enum import IntEnum


class TokenType(IntEnum):
    PAD = 0
    CLS = 1
    PREC = 2
    SEP = 3
    PEAK = 4
    MASK = 5  # a peak whose m/z and intensity are hidden from the encoder


NUM_TOKEN_TYPES = len(TokenType)
