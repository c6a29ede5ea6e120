"""nexa-eval end to end on MassBank with a tiny (untrained) model: the pipeline and its report, the practitioners'
baselines (spectral entropy, spec2vec, the MS2DeepScore-style Siamese model), the structural-similarity measures
and the lab- and structure-disjoint test."""
import numpy as np
import torch

from megatron_nexa.config import load_config
from megatron_nexa.convert.to_hf import write_hf
from megatron_nexa.data.source import SpectraSource
from megatron_nexa.eval.figure import plot_evaluation
from megatron_nexa.eval.lab_split import labs_of, merge_sublabs_across, split_by_lab
from megatron_nexa.eval.report import render
from megatron_nexa.eval.run import evaluate
from megatron_nexa.model.pretraining import NexaSpecForPretraining
from megatron_nexa.model.reference import ReferenceEncoder
from tests.conftest import REPO

FEATURES = {"pretrained encoder", "random-init encoder", "pretrained, mean of peaks", "random-init, mean of peaks",
            "binned spectrum"}
RANKINGS = {"matchms CosineGreedy", "matchms ModifiedCosineGreedy", "spectral entropy", "spec2vec",
            "MS2DeepScore-style Siamese", *(f"{f} (cosine)" for f in FEATURES)}


def test_eval_report_on_massbank(massbank, tmp_path):
    cfg = load_config(REPO / "configs/model/tiny.yaml").model
    torch.manual_seed(0)
    state = NexaSpecForPretraining(cfg, ReferenceEncoder(cfg)).state_dict()
    write_hf(state, cfg, tmp_path / "hf")
    stages = []
    results = evaluate(str(tmp_path / "hf"), str(massbank), max_train=300, epochs=2, n_bits=256, seeds=2,
                       max_retrieval=300, n_pairs=2000, log=stages.append)
    # embedding, five feature sets' heads, the trained baselines, retrieval in each test set
    assert len(stages) == 9 and "spec2vec" in stages[6] and "retrieval" in stages[-2] and "lab-" in stages[-1]
    assert results["n_train"] == 300 and results["n_test"] > 100 and results["n_test_rt"] > 50
    assert set(results["features"]) == FEATURES
    for r in results["features"].values():
        assert 0 <= r["fingerprint_tanimoto"] <= 1 and 0 <= r["rt_coverage_68"] <= r["rt_coverage_95"] <= 1
        assert np.isfinite(r["rt_mae"]) and r["rt_mae"] > 0
        assert r["fingerprint_tanimoto_sd"] >= 0 and r["rt_mae_sd"] > 0  # two seeds, two different heads
        assert r["rt_std_scale"] > 0 and 0 <= r["rt_coverage_68_raw"] <= r["rt_coverage_95_raw"] <= 1
        if r["rt_std_scale"] > 1:  # widened intervals hold at least as many targets as the raw ones
            assert r["rt_coverage_68"] >= r["rt_coverage_68_raw"]
    assert results["n_val_rt"] >= 20  # enough validation spectra with RT to scale the intervals
    assert results["seeds"] == [0, 1]
    assert set(results["retrieval"]) == RANKINGS
    for r in results["retrieval"].values():
        assert 20 < r["queries"] <= 300 and 0 <= r["hit@1"] <= r["hit@5"] <= r["hit@20"] <= 1
    for name in ("matchms CosineGreedy", "spectral entropy", "spec2vec"):  # real spectra: library search works
        assert results["retrieval"][name]["hit@20"] > 0.3, name
    ranking = results["candidate ranking"]
    assert set(ranking) == set(results["features"])
    for r in ranking.values():  # every test spectrum with a structure is a query; its structure is a candidate
        assert r["queries"] == results["n_test_fingerprint"] and r["mean candidates"] >= 1
        assert 0 <= r["hit@1"] <= r["hit@5"] <= r["hit@20"] <= 1 and r["random hit@1"] <= r["random hit@20"]
    versus = results["versus baselines"]
    assert len(versus) == 2 * (2 * 4 + 4)  # each pretrained set: c and b on 4 metrics, 4 rankings on retrieval
    assert {r["verdict"] for r in versus} <= {"better", "worse", "within noise"}
    for r in versus:
        low, high = r["ci95"]
        assert low <= r["difference"] <= high and r["rows"] > 20

    lab = results["lab-disjoint"]
    _check_structural(results["structural similarity"])
    _check_structural(lab["structural similarity"])
    for name in ("matchms CosineGreedy", "spectral entropy"):  # fragment matching follows structure on real spectra
        assert results["structural similarity"][name]["spearman"] > 0.05, name
    _check_lab_split(massbank, results)
    assert lab["n_test_rt"] == 0 and set(lab["features"]) == FEATURES  # no LC system of a held-out lab is trained on
    assert all("rt_mae" not in r and 0 <= r["fingerprint_tanimoto"] <= 1 for r in lab["features"].values())
    assert set(lab["retrieval"]) == RANKINGS and len(lab["versus baselines"]) == 2 * (2 * 3 + 4)  # no RT rows

    text = render(results)
    assert "95 % interval" in text and "Spearman" in text and "lab- and structure-disjoint" in text
    assert "FP Tanimoto" in text and "hit@20" in text and "random ranking (expected)" in text
    assert all(name in text for name in RANKINGS) and all(name in text for name in results["labs"]["held_out"])
    png = plot_evaluation(results, tmp_path / "eval.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _check_structural(scores: dict) -> None:
    assert set(scores) == RANKINGS
    for name, r in scores.items():
        assert np.isfinite(r["spearman"]) and -1 <= r["spearman"] <= 1, name
        assert 0 <= r["top5_tanimoto_analogues"] <= 1 and 0 <= r["top5_tanimoto"] <= 1, name
        assert r["top5_tanimoto"] >= r["top5_tanimoto_analogues"] - 1e-9, name  # own-structure neighbours: 1
        assert r["pairs"] == 2000 and r["queries"] > 20
    assert len({round(r["spearman"], 6) for r in scores.values()}) > 3  # the methods differ


def _check_lab_split(massbank, results) -> None:
    """The lab-disjoint test shares no lab, LC system or structure with any spectrum training could draw."""
    labs = results["labs"]
    run_ids = {k: SpectraSource(massbank, k).view.column("run_id") for k in ("train", "val", "test")}
    split = split_by_lab(run_ids)
    assert labs["held_out"] == list(split.held_out) and len(split.held_out) >= 2
    assert results["lab-disjoint"]["n_test"] == labs["test_spectra_lab_and_structure_disjoint"] == len(split.lab_test)
    assert results["n_test"] == len(split.test) and len(split.lab_test) > 20
    lab_of = merge_sublabs_across(run_ids)
    trained_labs = set(lab_of["train"][split.train])
    assert not trained_labs & set(lab_of["test"][split.lab_test]) and set(lab_of["test"][split.lab_test]) <= set(
        split.held_out)
    trained_systems = set(labs["lc_systems_trained_on"])
    assert trained_systems <= set(run_ids["train"][split.train])
    assert not trained_systems & set(results["lab-disjoint"]["lc_systems"])
    assert set(labs_of(results["lab-disjoint"]["lc_systems"])) & set(split.held_out)
    inchikey = {k: SpectraSource(massbank, k).view.column("inchikey") for k in ("train", "test")}
    blocks = {k: {(v or "").split("-")[0] for v in inchikey[k]} - {""} for k in inchikey}
    assert not blocks["train"] & {(v or "").split("-")[0] for v in inchikey["test"][split.lab_test]} - {""}
    assert sum(sum(c.values()) for c in labs["spectra_per_held_out_lab"].values()) <= 0.15 * sum(
        len(v) for v in run_ids.values())
