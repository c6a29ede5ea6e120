"""The collapse measure logged at every evaluation: the mean pairwise cosine of [CLS]."""
import torch

from megatron_nexa.engine.trainer import pairwise_cosine_sum


def test_collapsed_orthogonal_and_random_embeddings():
    total, pairs = pairwise_cosine_sum(torch.ones(4, 3) * torch.tensor([[1.0], [2.0], [3.0], [0.5]]))
    assert pairs == 6 and abs(total / pairs - 1.0) < 1e-6  # one direction: collapsed
    total, pairs = pairwise_cosine_sum(torch.eye(3))
    assert pairs == 3 and abs(total) < 1e-6
    x = torch.randn(9, 16, generator=torch.Generator().manual_seed(0))
    unit = torch.nn.functional.normalize(x, dim=-1)
    by_pairs = sum(float(unit[i] @ unit[j]) for i in range(9) for j in range(i + 1, 9))
    total, pairs = pairwise_cosine_sum(x)
    assert pairs == 36 and abs(total - by_pairs) < 1e-5
