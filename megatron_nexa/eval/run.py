"""Fingerprint and RT heads on frozen features, retrieval and structural similarity, scored on two test sets:
structure-disjoint (test structures never trained on, from labs that were) and lab- and structure-disjoint (the
test spectra of whole labs held out of training, eval/lab_split.py). One fit serves both, so their columns differ by
the lab alone.

Features compared in one run: the pretrained encoder's [CLS] embedding and the mean of its peak tokens,
the same two from the architecture with random weights, and a binned spectrum (the classic MLP input).
The heads, their initial weights and their training are the same for all five, so differences come from
the features. Retrieval and structural similarity also rank by the practitioners' similarities: matchms cosine,
spectral entropy, and spec2vec and an MS2DeepScore-style Siamese model, both trained on the same training spectra.
Heads are fitted with several seeds (mean and spread reported), and every pretrained
feature set is compared with its baselines by a paired bootstrap over test structures and head seeds
(eval/compare.py). The RT heads' standard deviations are rescaled on the validation split (structure-disjoint
from both), so the reported intervals are calibrated the way a user would deploy them; the raw coverage is
kept beside them.
"""
import numpy as np
import torch
import torch.nn.functional as F

from megatron_nexa.data.source import SpectraSource
from megatron_nexa.downstream.candidates import build_library, candidate_sets, hits, rank_candidates
from megatron_nexa.downstream.features import binned, spectra, structure_groups, subset
from megatron_nexa.downstream.fit import fit
from megatron_nexa.downstream.heads import FingerprintHead, GaussianHead
from megatron_nexa.downstream.metrics import MIN_CALIBRATION_ROWS, cosine_rows, regression_rows, std_scale, tanimoto_rows
from megatron_nexa.downstream.retrieval import (embedding_similarity, first_hits, hit_rates, matchms_similarity,
                                                retrieval_library)
from megatron_nexa.downstream.targets import RTScaler, morgan_fingerprints
from megatron_nexa.eval.compare import PER_ROW, compare
from megatron_nexa.eval.entropy import entropy_similarity
from megatron_nexa.eval.lab_split import split_by_lab
from megatron_nexa.eval.siamese import siamese_embeddings, train_siamese
from megatron_nexa.eval.spec2vec_baseline import spec2vec_vectors, train_spec2vec
from megatron_nexa.eval.structural import sample_pairs, structural_scores
from megatron_nexa.inference import Pooling, embed_pooled, load_model


def evaluate(model_dir: str, data_root: str, max_train: int | None = 20000, epochs: int = 30, n_bits: int = 2048,
             seed: int = 0, ppm: float = 10.0, seeds: int = 3, max_retrieval: int | None = 2500,
             lab_fraction: float = 0.15, held_out_labs: list[str] | None = None, n_pairs: int = 20000,
             log=lambda message: None) -> dict:
    """``log`` receives a line as each stage starts (the whole run takes tens of minutes on a CPU). ``epochs``
    trains the heads and the trained baselines (spec2vec's Word2Vec, the Siamese model) alike. Labs: see
    eval/lab_split.py (``lab_fraction`` 0 and no ``held_out_labs``: every lab is trained on, no lab-disjoint
    test); ``n_pairs``: spectrum pairs per library for the Spearman correlation with Tanimoto."""
    from transformers import AutoConfig, AutoModel

    sources = {split: SpectraSource(data_root, split) for split in ("train", "val", "test")}
    labs = split_by_lab({k: src.view.column("run_id") for k, src in sources.items()}, lab_fraction, held_out_labs,
                        seed)
    tr = labs.train[subset(len(labs.train), max_train, seed)]
    parts = {"train": ("train", tr), "val": ("val", np.arange(len(sources["val"]))), "test": ("test", labs.test)}
    if len(labs.lab_test):
        parts["lab"] = ("test", labs.lab_test)
    tests = [t for t in TESTS if t in parts]
    meta = {name: {col: sources[split].view.column(col)[idx] for col in ("smiles", "rt", "run_id", "inchikey")}
            for name, (split, idx) in parts.items()}
    items = {name: spectra(sources[split], idx) for name, (split, idx) in parts.items()}
    torch.manual_seed(seed)
    random_model = AutoModel.from_config(AutoConfig.from_pretrained(model_dir, trust_remote_code=True),
                                         trust_remote_code=True)
    pretrained = load_model(model_dir)
    log(f"embedding {len(tr):,} training, {len(items['val']):,} validation and "
        f"{sum(len(items[t]) for t in tests):,} test spectra with both encoders")
    pooled = {name: {k: embed_pooled(v, m)[0] for k, v in items.items()}  # one encoder pass per split
              for name, m in (("pretrained", pretrained), ("random-init", random_model))}
    features = {
        "pretrained encoder": {k: v[Pooling.CLS] for k, v in pooled["pretrained"].items()},
        "random-init encoder": {k: v[Pooling.CLS] for k, v in pooled["random-init"].items()},
        "pretrained, mean of peaks": {k: v[Pooling.MEAN] for k, v in pooled["pretrained"].items()},
        "random-init, mean of peaks": {k: v[Pooling.MEAN] for k, v in pooled["random-init"].items()},
        "binned spectrum": {k: binned(v) for k, v in items.items()},
    }
    fp = {k: morgan_fingerprints(list(meta[k]["smiles"]), n_bits) for k in ("train", *tests)}
    scaler = RTScaler(meta["train"]["run_id"], meta["train"]["rt"].astype(np.float64))
    rt_ok = {k: scaler.known(meta[k]["run_id"], meta[k]["rt"].astype(np.float64)) for k in meta}
    keys = {k: structure_groups(meta[k]["inchikey"]) for k in ("train", *tests)}
    # matchms compares every pair: the library is capped, and checked before anything is fitted
    libraries = {t: retrieval_library(keys[t], max_retrieval, seed, TESTS[t]) for t in tests}
    # candidate structures: every structure in the shipped data (all splits), filtered per query by mass
    library = build_library([s for src in sources.values() for s in src.view.column("smiles")], n_bits)
    candidates = {t: candidate_sets(meta[t]["smiles"][fp[t][1]], library, ppm) for t in tests}
    seed_list = [seed + i for i in range(seeds)]
    pool_sizes = {t: np.array([len(pool) for pool in candidates[t].pools]) for t in tests}
    rows = {t: {} for t in tests}
    out = {t: {**_counts(t, parts, fp, rt_ok), "features": {}, "candidate ranking": {}} for t in tests}
    for name, feats in features.items():
        x = {k: torch.from_numpy(np.nan_to_num(v)).float() for k, v in feats.items()}
        log(f"{name}: fingerprint and RT heads, {seeds} seed(s)")
        runs = [_heads(x, fp, meta, rt_ok, scaler, candidates, tests, n_bits, epochs, s) for s in seed_list]
        for t in tests:
            rows[t][name] = {k: np.stack([r[t][k] for r in runs]) for k in PER_ROW}  # [seeds, test rows]
            out[t]["features"][name] = _summary([r[t] for r in runs])
            out[t]["candidate ranking"][name] = _mean_hits([hits(r[t]["candidate_rank"], pool_sizes[t]) for r in runs])
    log(f"spec2vec and the MS2DeepScore-style Siamese model on the {len(tr):,} training spectra, {epochs} epochs")
    word2vec = train_spec2vec(items["train"], epochs, seed)
    ok = fp["train"][1]
    siamese = train_siamese(features["binned spectrum"]["train"][ok], fp["train"][0][ok], keys["train"][ok], epochs,
                            seed)
    for t in tests:
        ret = libraries[t]
        log(f"{TESTS[t]}: retrieval among {len(ret):,} test spectra (matchms scores every pair)")
        ret_items = [items[t][i] for i in ret]
        similarities = {
            "matchms CosineGreedy": lambda: matchms_similarity(ret_items, modified=False),
            "matchms ModifiedCosineGreedy": lambda: matchms_similarity(ret_items, modified=True),
            "spectral entropy": lambda: entropy_similarity(ret_items),
            "spec2vec": lambda: embedding_similarity(spec2vec_vectors(word2vec, ret_items)),
            "MS2DeepScore-style Siamese": lambda: embedding_similarity(
                siamese_embeddings(siamese, features["binned spectrum"][t][ret])),
            **{f"{name} (cosine)": (lambda f=f: embedding_similarity(f[t][ret])) for name, f in features.items()}}
        hit1, queries = _rank(similarities, keys[t][ret], fp[t][0][ret], fp[t][1][ret], n_pairs, seed, out[t])
        groups = {"fingerprint": keys[t][fp[t][1]], "rt": keys[t][rt_ok[t]],
                  "candidates": keys[t][fp[t][1]][candidates[t].rows], "retrieval": keys[t][ret][queries]}
        out[t]["versus baselines"] = compare(rows[t], hit1, groups, seed)
    results = {**out["test"], "n_train": len(tr), "n_val_rt": int(rt_ok["val"].sum()), "seeds": seed_list,
               "candidate_ppm": ppm, "labs": _lab_summary(labs, len(sources["train"]))}
    results["labs"]["lc_systems_trained_on"] = sorted({str(r) for r in meta["train"]["run_id"] if r})
    if "lab" in out:
        out["lab"]["lc_systems"] = sorted({str(r) for r in meta["lab"]["run_id"] if r})
    results["lab-disjoint"] = out.get("lab")
    return results


TESTS = {"test": "structure-disjoint test", "lab": "lab- and structure-disjoint test"}


def _rank(similarities: dict, keys, bits, valid, n_pairs: int, seed: int, out: dict) -> tuple[dict, np.ndarray]:
    """Retrieval hit rates and structural similarity of each ranking of one library, into ``out``; each
    similarity is a function computing its matrix, so one library-sized matrix lives at a time. Returns each
    ranking's per-query hit@1 and the queries, which depend on the keys alone and so are every ranking's."""
    pairs = sample_pairs(bits, valid, n_pairs, seed) if valid.sum() >= 2 else None
    out["retrieval"], out["structural similarity"], hit1 = {}, {}, {}
    for name, similarity in similarities.items():
        sim = similarity()
        queries, first = first_hits(sim, keys)
        out["retrieval"][name] = hit_rates(first)
        hit1[name] = (first < 1).astype(float)
        if pairs is not None:
            out["structural similarity"][name] = structural_scores(sim, bits, valid, keys, pairs)
    return hit1, queries


def _counts(t, parts, fp, rt_ok) -> dict:
    return {"n_test": int(len(parts[t][1])), "n_test_fingerprint": int(fp[t][1].sum()),
            "n_test_rt": int(rt_ok[t].sum())}


def _lab_summary(labs, n_train_split: int) -> dict:
    """Which labs are held out and how many spectra each split keeps (the JSON's record of the lab split)."""
    return {"held_out": list(labs.held_out), "spectra_per_held_out_lab": labs.spectra,
            "train_split_spectra": n_train_split, "train_spectra_outside_held_out_labs": int(len(labs.train)),
            "test_spectra_structure_disjoint": int(len(labs.test)),
            "test_spectra_lab_and_structure_disjoint": int(len(labs.lab_test))}


def _heads(x, fp, meta, rt_ok, scaler, candidates, tests, n_bits, epochs, seed) -> dict[str, dict[str, np.ndarray]]:
    """One seed's fingerprint and RT heads, fitted once and scored per row of each test set (see
    compare.PER_ROW): ``{test set: {score: per-row array}}``."""
    fingerprint = _fingerprint(x, fp, tests, n_bits, epochs, seed)
    rt = _rt(x, meta, rt_ok, scaler, tests, epochs, seed)
    out = {}
    for t in tests:
        scores, prob = fingerprint[t]
        ranks = rank_candidates(prob, candidates[t])["ranks"]
        out[t] = {**scores, **rt[t], "candidate_rank": ranks, "candidate_hit@1": (ranks == 1).astype(float)}
    return out


def _fingerprint(x, fp, tests, n_bits, epochs, seed) -> dict[str, tuple[dict, np.ndarray]]:
    ytr, vtr = fp["train"]
    torch.manual_seed(seed)  # each feature set's head starts alike, whatever was fitted before it
    head = FingerprintHead(x["train"].shape[1], n_bits)
    head = fit(head, (x["train"][vtr], torch.from_numpy(ytr[vtr]).float()),
               lambda h, a, y: F.binary_cross_entropy_with_logits(h(a), y), epochs=epochs, seed=seed)
    out = {}
    for t in tests:
        yte, vte = fp[t]
        with torch.no_grad():
            prob = torch.sigmoid(head(x[t][vte])).numpy()
        out[t] = ({"fingerprint_tanimoto": tanimoto_rows(prob > 0.5, yte[vte]),
                   "fingerprint_cosine": cosine_rows(prob, yte[vte].astype(float))}, prob)
    return out


def _rt(x, meta, ok, scaler, tests, epochs, seed) -> dict[str, dict[str, np.ndarray]]:
    """Per test set; a set whose LC systems were never trained on (a held-out lab) has no RT rows."""
    def parts(k):
        systems = meta[k]["run_id"][ok[k]]
        rt = meta[k]["rt"][ok[k]].astype(np.float64)
        return systems, rt, torch.from_numpy(scaler.codes(systems))

    s_tr, rt_tr, g_tr = parts("train")
    s_va, rt_va, g_va = parts("val")
    torch.manual_seed(seed)
    head = GaussianHead(x["train"].shape[1], groups=len(scaler.index))
    z = torch.from_numpy(scaler.transform(s_tr, rt_tr))
    head = fit(head, (x["train"][ok["train"]], g_tr, z),
               lambda h, a, g, t: F.gaussian_nll_loss(h(a, g)[0], t, h(a, g)[1].exp()), epochs=epochs, seed=seed)
    with torch.no_grad():
        mean_va, log_var_va = head(x["val"][ok["val"]], g_va)
    scale = 1.0
    if len(rt_va) >= MIN_CALIBRATION_ROWS:  # in standardised units, so one factor serves every LC system
        scale = std_scale(mean_va.numpy(), np.exp(0.5 * log_var_va.numpy()), scaler.transform(s_va, rt_va))
    out = {}
    for t in tests:
        s_te, rt_te, g_te = parts(t)
        with torch.no_grad():
            mean, log_var = head(x[t][ok[t]], g_te)
        mean_s = scaler.inverse(s_te, mean.numpy())
        std_s = np.exp(0.5 * log_var.numpy()) * scaler.scale(s_te)
        raw = regression_rows(mean_s, std_s, rt_te)
        out[t] = {**{f"rt_{k}": v for k, v in regression_rows(mean_s, std_s * scale, rt_te).items()},
                  "rt_in_68_raw": raw["in_68"], "rt_in_95_raw": raw["in_95"], "rt_std_scale": np.array([scale])}
    return out


def _summary(runs: list[dict]) -> dict[str, float]:
    """Each metric's mean over seeds, and for the headline ones the spread between seeds (sample SD). A test set
    without RT rows (held-out labs: none of their LC systems was trained on) has no RT numbers rather than NaN."""
    metrics = [("fingerprint_tanimoto", "fingerprint_tanimoto"), ("fingerprint_cosine", "fingerprint_cosine")]
    if len(runs[0]["rt_abs_error"]):
        metrics += [("rt_mae", "rt_abs_error"), ("rt_coverage_68", "rt_in_68"), ("rt_coverage_95", "rt_in_95"),
                    ("rt_coverage_68_raw", "rt_in_68_raw"), ("rt_coverage_95_raw", "rt_in_95_raw"),
                    ("rt_std_scale", "rt_std_scale")]
    per_seed = {name: np.array([r[row].mean() for r in runs]) for name, row in metrics}
    out = {name: float(v.mean()) for name, v in per_seed.items()}
    return out | {f"{name}_sd": _sd(per_seed[name]) for name in ("fingerprint_tanimoto", "rt_mae") if name in per_seed}


def _mean_hits(per_seed: list[dict]) -> dict:
    out = {k: float(np.mean([h[k] for h in per_seed])) for k in per_seed[0]}
    return out | {"queries": per_seed[0]["queries"], "hit@1_sd": _sd(np.array([h["hit@1"] for h in per_seed]))}


def _sd(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0
