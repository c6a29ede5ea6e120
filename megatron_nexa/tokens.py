"""The token vocabulary shared by data/ (which writes it) and model/ (which reads it).

A spectrum becomes ``[CLS] [PREC] peak_1 … peak_n`` (peaks sorted by m/z); a retention-order pair is
``[CLS] [PREC] peaks_A [SEP] [PREC] peaks_B``. ``segment`` says which spectrum a token belongs to
(``[CLS]`` is segment 0, ``[SEP]`` closes spectrum A so it is segment 0 too).

Model code compares tensors with ``TokenType.X.value`` (a plain int): torch 2.13's Dynamo traces
``tensor == TokenType.X`` as a Python ``False``, so ``torch.compile`` of the model fell back to eager there,
and under DeepSpeed's ``engine.compile()`` failed (``tests/unit/test_embeddings.py``).
"""
from enum import IntEnum

import torch


class TokenType(IntEnum):
    PAD = 0
    CLS = 1
    PREC = 2
    SEP = 3
    PEAK = 4
    MASK = 5  # a peak whose m/z and intensity are hidden from the encoder


NUM_TOKEN_TYPES = len(TokenType)


def masked_positions(token_type: torch.Tensor) -> torch.Tensor:
    """Flat (row-major) positions of the [MASK] tokens: the order of the masked-peak logits and targets."""
    return torch.nonzero(token_type.flatten() == TokenType.MASK.value).flatten()
