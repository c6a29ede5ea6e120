import numpy as np
import pytest

from megatron_nexa.downstream.features import binned
from megatron_nexa.downstream.metrics import cosine_rows, regression, std_scale, tanimoto_rows
from megatron_nexa.downstream.targets import RTScaler, morgan_fingerprints


def test_tanimoto_and_cosine():
    a = np.array([[1, 1, 0, 0], [0, 0, 0, 0]])
    b = np.array([[1, 0, 1, 0], [0, 0, 0, 0]])
    assert tanimoto_rows(a, b) == pytest.approx([1 / 3, 1.0])  # two empty fingerprints count as equal
    assert cosine_rows(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0]])) == pytest.approx([1.0])


def test_regression_calibration():
    rng = np.random.default_rng(0)
    target = rng.normal(0, 2.0, 20000)
    good = regression(np.zeros_like(target), np.full_like(target, 2.0), target)
    assert good["coverage_68"] == pytest.approx(0.68, abs=0.02) and good["coverage_95"] == pytest.approx(0.95, abs=0.01)
    over = regression(np.zeros_like(target), np.full_like(target, 0.5), target)
    assert over["coverage_68"] < 0.3 and good["mae"] == pytest.approx(2.0 * np.sqrt(2 / np.pi), rel=0.03)


def test_std_scale_repairs_overconfident_intervals():
    rng = np.random.default_rng(1)
    mean = rng.normal(0, 5, 20000)
    target = mean + rng.normal(0, 2.0, 20000)
    std = np.full_like(target, 0.5)  # four times too confident
    scale = std_scale(mean[:10000], std[:10000], target[:10000])  # fitted on one half, judged on the other
    assert scale == pytest.approx(4.0, rel=0.03)
    fixed = regression(mean[10000:], std[10000:] * scale, target[10000:])
    assert fixed["coverage_68"] == pytest.approx(0.68, abs=0.02)
    assert fixed["coverage_95"] == pytest.approx(0.95, abs=0.01)
    with pytest.raises(ValueError, match="validation row"):
        std_scale(np.zeros(0), np.zeros(0), np.zeros(0))


def test_morgan_fingerprints_and_rt_scaler():
    bits, valid = morgan_fingerprints(["CCO", "not a smiles", None, "CCO", "c1ccccc1"], n_bits=256)
    assert valid.tolist() == [True, False, False, True, True]
    assert np.array_equal(bits[0], bits[3]) and bits[0].sum() > 0 and not bits[1].any()
    systems = np.array(["a"] * 6 + ["b"] * 2, object)
    rt = np.array([10, 20, 30, 40, 50, 60, 5, 6], float)
    s = RTScaler(systems, rt)
    assert list(s.stats) == ["a"]  # "b" has too few spectra to standardise
    assert s.known(systems, rt).tolist() == [True] * 6 + [False] * 2
    z = s.transform(systems[:6], rt[:6])
    assert z.mean() == pytest.approx(0, abs=1e-6)
    np.testing.assert_allclose(s.inverse(systems[:6], z), rt[:6], rtol=1e-6)


def test_binned_spectrum():
    v = binned([(np.array([100.2, 100.7, 1500.0]), np.array([1.0, 3.0, 1.0]), 200.0)])
    assert v.shape == (1, 1000) and v[0, 100] == pytest.approx(1.0) and v[0].sum() == pytest.approx(1.0)


def test_first_hits_and_hit_rates():
    from megatron_nexa.downstream.retrieval import first_hits, hit_rates

    keys = np.array(["A", "A", "B", "B", "C"], object)
    sim = np.array([[9, 1, 5, 0, 0],    # A0: best other is B2, its twin A1 comes second
                    [1, 9, 0, 0, 0],    # A1: A0 ties with B/C at 0 → A0 first (stable order)
                    [0, 0, 9, 8, 0],    # B2: twin first
                    [0, 0, 8, 9, 0],
                    [0, 0, 0, 0, 9]], float)
    queries, first = first_hits(sim, keys)
    assert list(queries) == [0, 1, 2, 3] and list(first) == [1, 0, 0, 0]
    r = hit_rates(first, ks=(1, 2))
    assert r["queries"] == 4  # C has no other spectrum of its structure
    assert r["hit@1"] == 0.75 and r["hit@2"] == 1.0


def test_paired_bootstrap_separates_a_real_difference_from_noise():
    from megatron_nexa.downstream.metrics import paired_bootstrap

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(300), 3)
    b = rng.normal(0, 1, groups.size)
    diff, low, high = paired_bootstrap(b + 0.3 + rng.normal(0, 0.5, groups.size), b, groups)
    assert low < diff < high and low > 0.2 and high < 0.4
    diff, low, high = paired_bootstrap(b + rng.normal(0, 0.5, groups.size), b, groups)
    assert low < 0 < high


def test_paired_bootstrap_resamples_structures_not_rows():
    """Rows of one structure move together: their interval is as wide as with one row per structure."""
    from megatron_nexa.downstream.metrics import paired_bootstrap

    per_structure = np.random.default_rng(1).normal(0, 1, 50)
    _, low1, high1 = paired_bootstrap(per_structure, np.zeros(50), np.arange(50))
    _, low10, high10 = paired_bootstrap(np.repeat(per_structure, 10), np.zeros(500), np.repeat(np.arange(50), 10))
    assert high10 - low10 == pytest.approx(high1 - low1, rel=1e-9)
    _, low_rows, high_rows = paired_bootstrap(np.repeat(per_structure, 10), np.zeros(500), np.arange(500))
    assert high_rows - low_rows < 0.5 * (high10 - low10)  # treating rows as independent would overclaim


def test_compare_verdicts_follow_each_metrics_direction():
    from megatron_nexa.eval.compare import METRICS, PRETRAINED, compare

    rng = np.random.default_rng(2)
    n = 400
    groups = {m.groups: np.arange(n) for m in METRICS}
    base = {"fingerprint_tanimoto": rng.uniform(0, 1, n), "rt_abs_error": rng.uniform(0, 100, n),
            "candidate_hit@1": rng.integers(0, 2, n).astype(float)}
    better = {"fingerprint_tanimoto": base["fingerprint_tanimoto"] + 0.1, "rt_abs_error": base["rt_abs_error"] - 20,
              "candidate_hit@1": base["candidate_hit@1"]}
    rows = {"pretrained encoder": better, "pretrained, mean of peaks": base}
    rows |= {b: base for b in (*PRETRAINED.values(), "binned spectrum")}
    hit = rng.integers(0, 2, n).astype(float)
    hit1 = {f"{name} (cosine)": hit for name in rows} | {"matchms CosineGreedy": np.ones(n)}
    records = {(r["model"], r["baseline"], r["metric"]): r for r in compare(rows, hit1, groups)}
    assert len(records) == 2 * (2 * 4 + 1)  # library search is a baseline for retrieval only
    cls = "pretrained encoder"
    assert records[(cls, "binned spectrum", "FP Tanimoto")]["verdict"] == "better"
    assert records[(cls, "binned spectrum", "RT MAE (s)")]["verdict"] == "better"  # lower error
    assert records[(cls, "binned spectrum", "RT MAE (s)")]["difference"] == pytest.approx(-20)
    assert records[(cls, "binned spectrum", "candidate hit@1")]["verdict"] == "within noise"
    assert records[(cls, "matchms CosineGreedy", "retrieval hit@1")]["verdict"] == "worse"
    assert records[("pretrained, mean of peaks", "random-init, mean of peaks", "FP Tanimoto")]["verdict"] == "within noise"


def test_subset_groups_keeps_whole_structures():
    from megatron_nexa.downstream.features import subset_groups

    keys = np.array(["A"] * 5 + ["B"] * 3 + ["C"] * 4 + ["D"], object)
    assert subset_groups(keys, None, 0).tolist() == list(range(13))
    for seed in range(5):
        idx = subset_groups(keys, 8, seed)
        assert len(idx) <= 8 and np.all(np.diff(idx) > 0)
        for k in set(keys[idx]):  # a structure is in whole or not at all
            assert (keys[idx] == k).sum() == (keys == k).sum()


def test_paired_bootstrap_over_seeds_counts_training_noise():
    """Three seeds that disagree (+0.3, -0.1, +0.1) on a large, quiet test set: averaging the seeds first
    would call +0.1 a clear gain; resampling the seeds too leaves it within noise."""
    from megatron_nexa.downstream.metrics import paired_bootstrap

    rng = np.random.default_rng(3)
    groups = np.arange(2000)
    b = rng.normal(0, 1, (3, groups.size))
    a = b + np.array([[0.3], [-0.1], [0.1]]) + rng.normal(0, 0.01, b.shape)
    diff, low, high = paired_bootstrap(a.mean(0), b.mean(0), groups)
    assert diff == pytest.approx(0.1, abs=0.01) and low > 0.09
    diff2, low2, high2 = paired_bootstrap(a, b, groups)
    assert diff2 == pytest.approx(diff) and low2 < 0 < high2 and high2 > 0.25
    one = paired_bootstrap(a[:1], b[:1], groups)  # one seed: the plain structure bootstrap
    assert one == paired_bootstrap(a[0], b[0], groups)
