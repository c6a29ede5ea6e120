"""benchmarks/retention_order_heldout.py draws its held-out pairs as training does: same run, |ΔRT| > margin."""
import numpy as np

from benchmarks.retention_order_heldout import accuracy, heldout_pairs
from megatron_nexa.data.source import SpectraSource


def test_heldout_pairs_follow_the_training_rules(massbank):
    source = SpectraSource(massbank, "val")
    pairs = heldout_pairs(source, max_pairs=300, margin=3.0, seed=0)
    assert len(pairs) == 300 and pairs == heldout_pairs(source, max_pairs=300, margin=3.0, seed=0)
    for a, b, label in pairs:
        assert source.run[a] == source.run[b] >= 0 and abs(source.rt[a] - source.rt[b]) > 3.0
        assert label == float(source.rt[a] < source.rt[b])
    assert 0.4 < np.mean([p[2] for p in pairs]) < 0.6


def test_accuracy_interval():
    res = accuracy(np.array([1.0, -1.0, 1.0, 1.0]), np.array([1.0, 0.0, 0.0, 1.0]))
    assert res["acc"] == 0.75 and res["n"] == 4 and res["lo"] < 0.75 < res["hi"]
