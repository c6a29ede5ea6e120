"""The pieces of nexa-eval's baselines and split on small inputs: the lab hold-out rule, the structural-similarity
measures, spectral entropy against ms-entropy's pairwise score, spec2vec's determinism, the Siamese model."""
import numpy as np
import pytest

from megatron_nexa.data.labs import labs_of, matching_lab, merge_sublabs, unknown_lab_names
from megatron_nexa.eval.lab_split import LabError, choose_labs, split_by_lab
from megatron_nexa.eval.structural import sample_pairs, structural_scores, tanimoto_pairs


def test_labs_are_run_id_prefixes_and_sublabs_merge():
    labs = labs_of(["Eawag:1a2b", "Eawag_Additional_Specs:ffff", "BAFG:00", None, "plainrun", "CASMI_2016:x"])
    assert labs.tolist() == ["Eawag", "Eawag_Additional_Specs", "BAFG", "", "plainrun", "CASMI_2016"]
    assert merge_sublabs(labs).tolist() == ["Eawag", "Eawag", "BAFG", "", "plainrun", "CASMI_2016"]


def test_matching_lab_agrees_with_merged_labs_without_seeing_the_other_spectra():
    """Preprocessing decides chunk by chunk what ``merge_sublabs`` decides over the whole data."""
    run_ids = ["Eawag:1a2b", "Eawag_Additional_Specs:ffff", "BAFG:00", None, "", "plainrun", "CASMI_2016:x",
               "Eawagx:1", "BAFG_2:1"]
    merged = merge_sublabs(labs_of(run_ids))
    for wanted in (["Eawag"], ["BAFG", "plainrun"], ["Eawag", "CASMI_2016"], []):
        assert matching_lab(labs_of(run_ids), wanted).tolist() == [lab if lab in wanted else "" for lab in merged], wanted
    for i in range(len(run_ids)):  # one spectrum at a time, as a worker's chunk may hold
        assert matching_lab(labs_of(run_ids[i:i + 1]), ["Eawag"]).tolist() == ["Eawag" if merged[i] == "Eawag" else ""]
    # a name that is no lab of the data takes its "_" labs (nexa-eval would refuse it and list the labs)
    assert matching_lab(labs_of(run_ids), ["CASMI"]).tolist() == ["CASMI" if i == 6 else "" for i in range(len(run_ids))]


def test_held_out_labs_are_deterministic_and_within_the_fraction():
    rng = np.random.default_rng(0)
    labs = np.array([f"lab{i}" for i in rng.integers(0, 30, 5000)] + [""] * 100, dtype=object)
    chosen = choose_labs(labs, 0.2, seed=0)
    assert chosen == choose_labs(labs[::-1].copy(), 0.2, seed=0)  # names and counts decide, not order
    assert "" not in chosen and 0 < np.isin(labs, chosen).sum() <= 0.2 * len(labs)
    assert choose_labs(labs, 0.2, seed=1) != chosen
    assert choose_labs(labs, 0.0) == ()
    with pytest.raises(LabError, match=r"\[0, 1\)"):
        choose_labs(labs, 1.0)


def test_split_by_lab_keeps_held_out_labs_out_of_training():
    run_ids = {"train": np.array(["A:1", "B:1", "A_x:2", "C:1", None], object),
               "val": np.array(["B:2"], object), "test": np.array(["A:1", "B:3", "C:2", "A_x:9"], object)}
    split = split_by_lab(run_ids, held_out=["A"])
    assert split.held_out == ("A",) and split.spectra == {"A": {"train": 2, "val": 0, "test": 2}}
    assert split.train.tolist() == [1, 3, 4] and split.test.tolist() == [1, 2] and split.lab_test.tolist() == [0, 3]
    none = split_by_lab(run_ids, fraction=0.0)
    assert none.held_out == () and len(none.train) == 5 and len(none.lab_test) == 0
    with pytest.raises(LabError, match="no spectrum is from a lab named Z; the data's labs are A, B, C"):
        split_by_lab(run_ids, held_out=["Z"])
    with pytest.raises(LabError, match=r"A_x is part of lab A .*: name A; the data's labs are A, B, C"):
        split_by_lab(run_ids, held_out=["A_x"])  # as nexa-preprocess --exclude-labs says it


def test_unknown_lab_names_point_to_the_lab_meant():
    labs = ["Eawag", "Eawag_Additional_Specs", "CASMI_2012", "CASMI_2016", "LCSB"]
    assert unknown_lab_names(["Eawag", "LCSB", "CASMI_2012"], labs) == []
    assert unknown_lab_names(["lcsb", "CASMI", "Eawag_Additional_Specs", "Zz"], labs) == [
        "no spectrum is from a lab named lcsb (did you mean LCSB?)",
        "no spectrum is from a lab named CASMI (did you mean CASMI_2012, CASMI_2016?)",
        "Eawag_Additional_Specs is part of lab Eawag (a lab named like another plus '_…' is that lab): name Eawag",
        "no spectrum is from a lab named Zz"]


def _bits(n: int, n_bits: int = 64, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, n_bits)) < 0.3).astype(np.uint8)


def test_structural_measures_follow_the_similarity():
    bits = _bits(60)
    valid = np.ones(60, bool)
    valid[5] = False  # no structure: in no pair and no neighbour list
    keys = np.array([f"s{i}" for i in range(60)], object)
    pairs = sample_pairs(bits, valid, 3000, seed=0)
    assert pairs.i.tolist() == sample_pairs(bits, valid, 3000, seed=0).i.tolist()  # seeded
    assert not (pairs.i == pairs.j).any() and 5 not in pairs.i and 5 not in pairs.j
    everyone = np.arange(60)
    tanimoto = tanimoto_pairs(bits, np.repeat(everyone, 60), np.tile(everyone, 60)).reshape(60, 60)
    exact = structural_scores(tanimoto, bits, valid, keys, pairs)
    assert exact["spearman"] == pytest.approx(1.0) and exact["pairs"] == 3000 and exact["queries"] == 59
    assert structural_scores(-tanimoto, bits, valid, keys, pairs)["spearman"] == pytest.approx(-1.0)
    flat = structural_scores(np.zeros((60, 60)), bits, valid, keys, pairs)
    assert flat["spearman"] == 0.0  # a similarity that ranks nothing carries no information
    # the best possible top-5: each query's 5 most Tanimoto-similar structures
    off = np.where(np.eye(60, dtype=bool), -1, tanimoto)[np.ix_(valid, valid)]
    assert exact["top5_tanimoto"] == pytest.approx(np.sort(off, axis=1)[:, -5:].mean())
    assert flat["top5_tanimoto"] < exact["top5_tanimoto"]
    with pytest.raises(ValueError, match="library has 60 rows"):
        structural_scores(np.zeros((4, 4)), bits, valid, keys, pairs)


def test_analogue_top5_leaves_out_the_query_structure():
    bits = _bits(6)
    bits[1] = bits[0]  # rows 0 and 1: one structure
    keys = np.array(["a", "a", "b", "c", "d", "e"], object)
    sim = np.eye(6)
    sim[0, 1] = sim[1, 0] = 0.9
    r = structural_scores(sim, bits, np.ones(6, bool), keys, sample_pairs(bits, np.ones(6, bool), 50))
    assert r["top5_tanimoto"] > r["top5_tanimoto_analogues"]


def _spectra(n: int, seed: int = 0) -> list[tuple]:
    """Fragment-like spectra that share peaks in families, so similarities are neither all 0 nor all 1."""
    rng = np.random.default_rng(seed)
    families = [np.sort(rng.uniform(50, 400, 12)) for _ in range(4)]
    out = []
    for i in range(n):
        mz = families[i % 4][rng.random(12) < 0.7] + rng.normal(0, 0.002, 1)
        out.append((mz, rng.uniform(1, 100, len(mz)), 450.0 + i))
    return out


def test_entropy_similarity_is_ms_entropys_pairwise_score():
    from ms_entropy import FlashEntropySearch, calculate_entropy_similarity

    from megatron_nexa.eval.entropy import entropy_similarity

    items = _spectra(12) + [(np.array([500.0]), np.array([1.0]), 450.0)]  # only a peak above the precursor
    sim = entropy_similarity(items)
    assert sim.shape == (13, 13) and np.allclose(sim, sim.T) and (sim[-1] == 0).all()
    clean = FlashEntropySearch().clean_spectrum_for_search
    for a, b in [(0, 4), (0, 1), (2, 6), (3, 3)]:
        pa, pb = (clean(items[k][2], np.stack(items[k][:2], 1).astype(np.float32)) for k in (a, b))
        assert sim[a, b] == pytest.approx(calculate_entropy_similarity(pa, pb, ms2_tolerance_in_da=0.02,
                                                                       clean_spectra=False), abs=1e-5)
    assert sim[0, 4] > 0.5 > sim[0, 1]  # a family shares peaks
    with pytest.raises(ValueError, match="tolerance must be positive"):
        entropy_similarity(items, tolerance=0)


def test_spec2vec_is_deterministic_and_groups_families():
    from megatron_nexa.downstream.retrieval import embedding_similarity
    from megatron_nexa.eval.spec2vec_baseline import spec2vec_vectors, train_spec2vec

    train, test = _spectra(80, seed=1), _spectra(8, seed=1)
    vectors = spec2vec_vectors(train_spec2vec(train, epochs=5, seed=0), test)
    assert np.array_equal(vectors, spec2vec_vectors(train_spec2vec(train, epochs=5, seed=0), test))
    unknown = spec2vec_vectors(train_spec2vec(train, epochs=1, seed=0), [(np.array([999.5]), np.array([1.0]), 1000.0)])
    assert (unknown == 0).all()  # no peak the model knows
    sim = embedding_similarity(vectors)
    same = np.equal.outer(np.arange(8) % 4, np.arange(8) % 4) & ~np.eye(8, dtype=bool)
    assert sim[same].mean() > sim[~same].mean()
    with pytest.raises(ValueError, match="at least one epoch"):
        train_spec2vec(train, epochs=0)


def test_siamese_model_learns_tanimoto_from_spectra():
    import torch

    from megatron_nexa.downstream.features import binned
    from megatron_nexa.eval.siamese import siamese_embeddings, tanimoto_matrix, train_siamese

    items = _spectra(200, seed=2)
    bits = _bits(4, seed=3)[np.arange(200) % 4]  # four structures, one per family
    keys = np.array([f"s{i % 4}" for i in range(200)], object)
    x = binned(items)
    threads = torch.get_num_threads()
    model = train_siamese(x, bits, keys, epochs=60, seed=0, pairs_per_structure=16, batch_size=64, hidden=64, out=32)
    assert torch.get_num_threads() == threads  # trained on one thread, the caller's count restored
    e = siamese_embeddings(model, x[:8])
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    predicted, target = e @ e.T, tanimoto_matrix(bits[:8])
    assert np.abs(predicted - target).mean() < np.abs(target.mean() - target).mean()  # beats a constant
    with pytest.raises(ValueError, match="two structures"):
        train_siamese(x[:4:4], bits[:4:4], keys[:4:4], epochs=1)


def test_a_retrieval_library_without_a_query_is_an_error_before_any_fit():
    from megatron_nexa.downstream.retrieval import LibraryError, retrieval_library

    keys = np.array(["a", "a", "b", "c", "c", "c"], dtype=object)
    assert retrieval_library(keys, None, 0).tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(LibraryError, match=r"library of 0 spectra .*; raise the limit \(1\)"):
        retrieval_library(keys, 1, 0)  # no whole structure fits
    with pytest.raises(LibraryError, match=r"^x: a retrieval library of 3 spectra .* nothing to retrieve$"):
        retrieval_library(np.array(["a", "b", "c"], dtype=object), None, 0, "x")
