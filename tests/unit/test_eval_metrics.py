import numpy as np
import pytest

from megatron_nexa.eval.features import binned
from megatron_nexa.eval.metrics import cosine, regression, tanimoto
from megatron_nexa.finetune.targets import RTScaler, morgan_fingerprints


def test_tanimoto_and_cosine():
    a = np.array([[1, 1, 0, 0], [0, 0, 0, 0]])
    b = np.array([[1, 0, 1, 0], [0, 0, 0, 0]])
    assert tanimoto(a, b) == pytest.approx((1 / 3 + 1.0) / 2)
    assert cosine(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0]])) == pytest.approx(1.0)


def test_regression_calibration():
    rng = np.random.default_rng(0)
    target = rng.normal(0, 2.0, 20000)
    good = regression(np.zeros_like(target), np.full_like(target, 2.0), target)
    assert good["coverage_68"] == pytest.approx(0.68, abs=0.02) and good["coverage_95"] == pytest.approx(0.95, abs=0.01)
    over = regression(np.zeros_like(target), np.full_like(target, 0.5), target)
    assert over["coverage_68"] < 0.3 and good["mae"] == pytest.approx(2.0 * np.sqrt(2 / np.pi), rel=0.03)


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


def test_hits_at_k():
    from megatron_nexa.eval.retrieval import hits_at_k

    keys = np.array(["A", "A", "B", "B", "C"], object)
    sim = np.array([[9, 1, 5, 0, 0],    # A0: best other is B2, its twin A1 comes second
                    [1, 9, 0, 0, 0],    # A1: A0 ties with B/C at 0 → A0 first (stable order)
                    [0, 0, 9, 8, 0],    # B2: twin first
                    [0, 0, 8, 9, 0],
                    [0, 0, 0, 0, 9]], float)
    r = hits_at_k(sim, keys, ks=(1, 2))
    assert r["queries"] == 4  # C has no other spectrum of its structure
    assert r["hit@1"] == 0.75 and r["hit@2"] == 1.0
