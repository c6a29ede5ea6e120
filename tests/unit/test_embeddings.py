import dataclasses

import numpy as np
import torch

from megatron_nexa.config import ModelConfig
from megatron_nexa.model.embeddings import SpectrumEmbedding, fourier_frequencies
from megatron_nexa.tokens import TokenType


def test_frequencies_span_the_configured_periods():
    cfg = ModelConfig(fourier_num_frequencies=7, fourier_min_period=1e-3, fourier_max_period=1e3)
    periods = 1 / fourier_frequencies(cfg)
    assert torch.allclose(periods[[0, -1]], torch.tensor([1e3, 1e-3], dtype=torch.float64))
    assert torch.allclose(periods[:-1] / periods[1:], torch.full((6,), 10.0, dtype=torch.float64))


def test_fourier_features_resolve_millidaltons_at_high_mz():
    """Two masses 0.5 mDa apart near m/z 1500 must get clearly different high-frequency features."""
    emb = SpectrumEmbedding(ModelConfig())
    f = emb.fourier_features(torch.tensor([1500.1234, 1500.1239], dtype=torch.float32))
    assert (f[0] - f[1]).abs().max() > 0.5


def test_masked_and_special_tokens_hide_their_values():
    emb = SpectrumEmbedding(dataclasses.replace(ModelConfig(), hidden_size=16)).eval()
    tt = torch.tensor([[TokenType.CLS, TokenType.PREC, TokenType.PEAK, TokenType.MASK, TokenType.PAD]])
    a = emb(tt, torch.tensor([[1.0, 300.0, 100.0, 200.0, 5.0]]), torch.tensor([[0.3, 0.5, 0.7, 0.9, 0.1]]))
    b = emb(tt, torch.tensor([[9.0, 300.0, 150.0, 250.0, 6.0]]), torch.tensor([[0.6, 0.1, 0.7, 0.2, 0.4]]))
    same = (a - b).abs().amax(-1)[0]
    assert same[0] == 0 and same[3] == 0 and same[4] == 0, "CLS/MASK/PAD ignore m/z and intensity"
    assert same[1] == 0, "[PREC] ignores intensity"
    assert same[2] > 0, "a peak's m/z is seen"


def test_mask_and_embeddings_trace_as_one_graph_under_dynamo(tiny_cfg):
    """Dynamo (torch 2.13) traced ``tensor == TokenType.X`` as a Python False: the mask and embedding frames
    then fell back to eager under torch.compile, and DeepSpeed's engine.compile() failed (tokens.py)."""
    from megatron_nexa.model.attention_mask import spectral_attention_mask
    from tests.spectra import pair_tokens, random_batch

    tt, mz, inten, seg = random_batch(0)
    window = tiny_cfg.model.local_window
    traced = torch.compile(spectral_attention_mask, backend="eager", fullgraph=True)
    assert torch.equal(traced(tt, seg, window), spectral_attention_mask(tt, seg, window))
    pair = [t[None] for t in pair_tokens(np.random.default_rng(1), 5, 7, 24)]
    assert torch.equal(traced(pair[0], pair[3], window), spectral_attention_mask(pair[0], pair[3], window))
    emb = SpectrumEmbedding(tiny_cfg.model)
    torch.testing.assert_close(torch.compile(emb, backend="eager", fullgraph=True)(tt, mz, inten), emb(tt, mz, inten))
