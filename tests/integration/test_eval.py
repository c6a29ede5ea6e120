"""nexa-eval end to end on MassBank with a tiny (untrained) model: the pipeline and its report."""
import numpy as np
import torch

from megatron_nexa.config import load_config
from megatron_nexa.convert.to_hf import write_hf
from megatron_nexa.eval.figure import plot_evaluation
from megatron_nexa.eval.run import evaluate, render
from megatron_nexa.model.pretraining import NexaSpecForPretraining
from megatron_nexa.model.reference import ReferenceEncoder
from tests.conftest import REPO


def test_eval_report_on_massbank(massbank, tmp_path):
    cfg = load_config(REPO / "configs/model/tiny.yaml").model
    torch.manual_seed(0)
    state = NexaSpecForPretraining(cfg, ReferenceEncoder(cfg)).state_dict()
    write_hf(state, cfg, tmp_path / "hf")
    stages = []
    results = evaluate(str(tmp_path / "hf"), str(massbank), max_train=300, epochs=2, n_bits=256, seeds=2,
                       max_retrieval=300, log=stages.append)
    assert len(stages) == 7 and "retrieval" in stages[-1]  # embedding, five feature sets' heads, retrieval
    assert results["n_train"] == 300 and results["n_test"] > 100 and results["n_test_rt"] > 50
    assert set(results["features"]) == {"pretrained encoder", "random-init encoder", "pretrained, mean of peaks",
                                        "random-init, mean of peaks", "binned spectrum"}
    for r in results["features"].values():
        assert 0 <= r["fingerprint_tanimoto"] <= 1 and 0 <= r["rt_coverage_68"] <= r["rt_coverage_95"] <= 1
        assert np.isfinite(r["rt_mae"]) and r["rt_mae"] > 0
        assert r["fingerprint_tanimoto_sd"] >= 0 and r["rt_mae_sd"] > 0  # two seeds, two different heads
        assert r["rt_std_scale"] > 0 and 0 <= r["rt_coverage_68_raw"] <= r["rt_coverage_95_raw"] <= 1
        if r["rt_std_scale"] > 1:  # widened intervals hold at least as many targets as the raw ones
            assert r["rt_coverage_68"] >= r["rt_coverage_68_raw"]
    assert results["n_val_rt"] >= 20  # enough validation spectra with RT to scale the intervals
    assert results["seeds"] == [0, 1]
    assert set(results["retrieval"]) == {"matchms CosineGreedy", "matchms ModifiedCosineGreedy", "pretrained encoder (cosine)",
                                         "random-init encoder (cosine)", "pretrained, mean of peaks (cosine)",
                                         "random-init, mean of peaks (cosine)", "binned spectrum (cosine)"}
    for r in results["retrieval"].values():
        assert 20 < r["queries"] <= 300 and 0 <= r["hit@1"] <= r["hit@5"] <= r["hit@20"] <= 1
    assert results["retrieval"]["matchms CosineGreedy"]["hit@20"] > 0.3  # real spectra: library search works
    ranking = results["candidate ranking"]
    assert set(ranking) == set(results["features"])
    for r in ranking.values():  # every test spectrum with a structure is a query; its structure is a candidate
        assert r["queries"] == results["n_test_fingerprint"] and r["mean candidates"] >= 1
        assert 0 <= r["hit@1"] <= r["hit@5"] <= r["hit@20"] <= 1 and r["random hit@1"] <= r["random hit@20"]
    versus = results["versus baselines"]
    assert len(versus) == 18 and {r["verdict"] for r in versus} <= {"better", "worse", "within noise"}
    for r in versus:
        low, high = r["ci95"]
        assert low <= r["difference"] <= high and r["rows"] > 20
    text = render(results)
    assert "95 % interval" in text
    assert "FP Tanimoto" in text and "hit@20" in text and "random ranking (expected)" in text
    png = plot_evaluation(results, tmp_path / "eval.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
