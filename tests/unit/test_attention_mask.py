"""The spectral mask against its rules (attention_mask.py's docstring), written out pair by pair."""
import numpy as np
import pytest
import torch

from megatron_nexa.model.attention_mask import spectral_attention_mask
from megatron_nexa.tokens import TokenType
from tests.spectra import batch, pair_tokens, spectrum_tokens


def allowed_by_rules(tt: list[int], seg: list[int], window: int) -> np.ndarray:
    s = len(tt)
    out = np.zeros((s, s), bool)
    peak = {TokenType.PEAK, TokenType.MASK}
    for i in range(s):
        for j in range(s):
            if tt[i] == TokenType.PAD or tt[j] == TokenType.PAD:
                out[i, j] = i == j and tt[i] == TokenType.PAD  # a padded query attends only itself
            elif TokenType.CLS in (tt[i], tt[j]):
                out[i, j] = True
            elif seg[i] != seg[j]:
                out[i, j] = False
            elif {tt[i], tt[j]} & {TokenType.PREC, TokenType.SEP}:
                out[i, j] = True
            else:
                out[i, j] = tt[i] in peak and tt[j] in peak and abs(i - j) <= window // 2
    return out


@pytest.mark.parametrize("window", [2, 8, 64, 1000])
def test_mask_follows_the_rules(window):
    rng = np.random.default_rng(window)
    rows = [spectrum_tokens(rng, int(rng.integers(1, 60)), 80) for _ in range(3)] + [pair_tokens(rng, 20, 30, 80)]
    tt, _, _, seg = batch(rows)
    tt[0, 5] = TokenType.MASK
    masked_out = spectral_attention_mask(tt, seg, window)
    assert masked_out.shape == (4, 1, 80, 80) and masked_out.dtype == torch.bool
    for r in range(4):
        expected = allowed_by_rules(tt[r].tolist(), seg[r].tolist(), window)
        np.testing.assert_array_equal(~masked_out[r, 0].numpy(), expected, err_msg=f"row {r}")
