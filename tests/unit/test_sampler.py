import numpy as np
import pytest

from megatron_nexa.data.blend import BlendIndex
from megatron_nexa.data.sampler import Kind, PretrainingSampler, epoch_order, feistel_permute


@pytest.mark.parametrize("n", [1, 2, 3, 17, 1000, 4099])
def test_feistel_is_a_bijection(n):
    assert sorted(feistel_permute(np.arange(n), n, key=5).tolist()) == list(range(n))


def test_epochs_differ_and_shuffle():
    n = 1000
    e0, e1 = epoch_order(np.arange(n), n, seed=1), epoch_order(np.arange(n, 2 * n), n, seed=1) - n
    assert not np.array_equal(e0, e1) and not np.array_equal(e0, np.arange(n))
    assert not np.array_equal(e0, epoch_order(np.arange(n), n, seed=2))


def take(sampler, k):
    it = iter(sampler)
    return [next(it) for _ in range(k)]


@pytest.mark.parametrize("n, micro, dp", [(100, 4, 2), (37, 3, 3), (10, 4, 1)])
def test_ranks_disjoint_and_each_sample_once_per_epoch(n, micro, dp):
    steps = (3 * n) // (micro * dp) + 2
    per_rank = [[i for mb in take(PretrainingSampler(n, micro, r, dp, seed=7), steps) for i, _ in mb]
                for r in range(dp)]
    stream = np.empty(steps * micro * dp, np.int64)  # rebuild the global stream from the rank slices
    for r, items in enumerate(per_rank):
        for s in range(steps):
            base = s * micro * dp + r * micro
            stream[base:base + micro] = items[s * micro:(s + 1) * micro]
    for e in range(3):  # epoch e occupies positions [e n, (e+1) n) of the stream, and nothing else
        chunk = stream[e * n:(e + 1) * n]
        assert sorted(chunk.tolist()) == list(range(e * n, (e + 1) * n))
    for s in range(steps):  # within one global batch the ranks never overlap
        batch = [set(per_rank[r][s * micro:(s + 1) * micro]) for r in range(dp)]
        assert sum(len(b) for b in batch) == len(set().union(*batch))


def test_resume_is_exact_and_survives_a_dp_size_change():
    n, micro = 50, 4
    full = take(PretrainingSampler(n, micro, 0, 1, seed=3), 20)
    resumed = take(PretrainingSampler(n, micro, 0, 1, seed=3, consumed_samples=7 * micro), 13)
    assert resumed == full[7:]
    # two ranks after 7 single-rank steps continue the same global stream
    flat = [i for mb in full for i, _ in mb]
    r0, r1 = (take(PretrainingSampler(n, micro // 2, r, 2, seed=3, consumed_samples=7 * micro), 4) for r in (0, 1))
    merged = [i for a, b in zip(r0, r1) for i, _ in a + b]
    assert merged == flat[7 * micro:7 * micro + 4 * micro]


def test_kinds_fill_their_slots():
    s = PretrainingSampler(100, 8, pair_fraction=0.25, view_fraction=0.25)
    assert [k for _, k in next(iter(s))] == [Kind.PAIR] * 2 + [Kind.VIEWS] * 2 + [Kind.SINGLE] * 4
    with pytest.raises(ValueError, match="empty"):
        PretrainingSampler(0, 8)


def test_blend_shares_follow_weights():
    b = BlendIndex([100, 50], [3.0, 1.0])
    assert len(b) == 150 and b.counts.tolist() == [113, 37]  # 112.5 / 37.5: the tie goes to the first
    assert b.locate(0) == (0, 0) and b.locate(112) == (0, 12) and b.locate(113) == (1, 0) and b.locate(149) == (1, 36)
