"""The spectral attention mask: a local window over m/z-sorted peaks plus global tokens.

Rules (``allowed[i, j]`` = query i may attend key j):
- ``[CLS]`` attends everything and is attended by everything (sequence-global);
- ``[PREC]`` and ``[SEP]`` do the same within their own spectrum (segment-global);
- a peak (or masked peak) attends peaks of its own spectrum with ``|i - j| <= window // 2``
  (Longformer's convention: window/2 on each side), so a pair never mixes windows across ``[SEP]``;
- padding is never attended; a padded query row attends only itself so softmax stays finite.

The result uses megatron-core's convention: boolean ``[b, 1, s, s]``, **True = masked out**.
"""
import torch

from megatron_nexa.tokens import TokenType


def spectral_attention_mask(token_type: torch.Tensor, segment: torch.Tensor, window: int) -> torch.Tensor:
    valid = token_type != TokenType.PAD.value
    peak = (token_type == TokenType.PEAK.value) | (token_type == TokenType.MASK.value)
    seq_global = token_type == TokenType.CLS.value
    seg_global = (token_type == TokenType.PREC.value) | (token_type == TokenType.SEP.value)

    # Bands of an all-True [s, s] made by a tensor method, not torch.arange/torch.eye: DeepSpeed's ZeRO-3 wraps
    # those factories while it builds the model, and Dynamo then breaks the graph at them (engine.compile()).
    ones = token_type.new_ones((token_type.shape[1],) * 2, dtype=torch.bool)
    near = ones.triu(-(window // 2)).tril(window // 2)  # |i - j| <= window // 2
    diagonal = ones.triu(0).tril(0)

    def q(x):  # query axis
        return x[:, :, None]

    def k(x):  # key axis
        return x[:, None, :]

    same_segment = q(segment) == k(segment)
    allowed = q(seq_global) | k(seq_global) | (
        same_segment & (q(seg_global) | k(seg_global) | (q(peak) & k(peak) & near))
    )
    allowed &= q(valid) & k(valid)
    allowed |= diagonal & ~q(valid)
    return ~allowed[:, None]
