"""Fingerprint and RT heads on frozen features, scored on the structure-disjoint test split.

Features compared in one run: the pretrained encoder's [CLS] embedding and the mean of its peak tokens,
the same two from the architecture with random weights, and a binned spectrum (the classic MLP input).
The heads, their initial weights and their training are the same for all five, so differences come from
the features. Heads are fitted with several seeds (mean and spread reported), and every pretrained
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
from megatron_nexa.downstream.features import binned, spectra, subset, subset_groups
from megatron_nexa.downstream.fit import fit
from megatron_nexa.downstream.heads import FingerprintHead, GaussianHead
from megatron_nexa.downstream.metrics import MIN_CALIBRATION_ROWS, cosine_rows, regression_rows, std_scale, tanimoto_rows
from megatron_nexa.downstream.retrieval import embedding_similarity, first_hits, hit_rates, matchms_similarity
from megatron_nexa.downstream.targets import RTScaler, morgan_fingerprints
from megatron_nexa.eval.compare import PER_ROW, compare, render_comparisons
from megatron_nexa.inference import Pooling, embed_pooled, load_model


def evaluate(model_dir: str, data_root: str, max_train: int | None = 20000, epochs: int = 30, n_bits: int = 2048,
             seed: int = 0, ppm: float = 10.0, seeds: int = 3, max_retrieval: int | None = 2500,
             log=lambda message: None) -> dict:
    """``log`` receives a line as each stage starts (the whole run takes tens of minutes on a CPU)."""
    from transformers import AutoConfig, AutoModel

    train_src, val_src, test_src = (SpectraSource(data_root, split) for split in ("train", "val", "test"))
    tr, te = subset(len(train_src), max_train, seed), np.arange(len(test_src))
    splits = (("train", train_src, tr), ("val", val_src, np.arange(len(val_src))), ("test", test_src, te))
    meta = {name: {col: src.view.column(col)[idx] for col in ("smiles", "rt", "run_id")} for name, src, idx in splits}
    items = {name: spectra(src, idx) for name, src, idx in splits}
    torch.manual_seed(seed)
    random_model = AutoModel.from_config(AutoConfig.from_pretrained(model_dir, trust_remote_code=True),
                                         trust_remote_code=True)
    pretrained = load_model(model_dir)
    log(f"embedding {len(tr):,} training, {len(items['val']):,} validation and {len(te):,} test spectra "
        "with both encoders")
    pooled = {name: {k: embed_pooled(v, m)[0] for k, v in items.items()}  # one encoder pass per split
              for name, m in (("pretrained", pretrained), ("random-init", random_model))}
    features = {
        "pretrained encoder": {k: v[Pooling.CLS] for k, v in pooled["pretrained"].items()},
        "random-init encoder": {k: v[Pooling.CLS] for k, v in pooled["random-init"].items()},
        "pretrained, mean of peaks": {k: v[Pooling.MEAN] for k, v in pooled["pretrained"].items()},
        "random-init, mean of peaks": {k: v[Pooling.MEAN] for k, v in pooled["random-init"].items()},
        "binned spectrum": {k: binned(v) for k, v in items.items()},
    }
    fp = {k: morgan_fingerprints(list(meta[k]["smiles"]), n_bits) for k in ("train", "test")}
    scaler = RTScaler(meta["train"]["run_id"], meta["train"]["rt"].astype(np.float64))
    rt_ok = {k: scaler.known(meta[k]["run_id"], meta[k]["rt"].astype(np.float64)) for k in meta}
    keys = _structure_keys(test_src.view.column("inchikey")[te])
    # candidate structures: every structure in the shipped data (all splits), filtered per query by mass
    library = build_library([s for split in ("train", "val", "test")
                             for s in SpectraSource(data_root, split).view.column("smiles")], n_bits)
    candidates = candidate_sets(meta["test"]["smiles"][fp["test"][1]], library, ppm)
    seed_list = [seed + i for i in range(seeds)]
    pool_sizes = np.array([len(pool) for pool in candidates.pools])
    rows, results = {}, {"n_train": len(tr), "n_test": len(te), "n_test_fingerprint": int(fp["test"][1].sum()),
                         "n_test_rt": int(rt_ok["test"].sum()), "n_val_rt": int(rt_ok["val"].sum()),
                         "seeds": seed_list, "features": {},
                         "candidate ranking": {}}
    for name, feats in features.items():
        x = {k: torch.from_numpy(np.nan_to_num(v)).float() for k, v in feats.items()}
        log(f"{name}: fingerprint and RT heads, {seeds} seed(s)")
        runs = [_heads(x, fp, meta, rt_ok, scaler, candidates, n_bits, epochs, s) for s in seed_list]
        rows[name] = {k: np.stack([r[k] for r in runs]) for k in PER_ROW}  # [seeds, test rows]
        results["features"][name] = _summary(runs)
        results["candidate ranking"][name] = _mean_hits([hits(r["candidate_rank"], pool_sizes) for r in runs])
    results["candidate_ppm"] = ppm
    ret = subset_groups(keys, max_retrieval, seed)  # matchms compares every pair: cap the library
    log(f"retrieval among {len(ret):,} test spectra (matchms scores every pair)")
    ret_items = [items["test"][i] for i in ret]
    similarity = {"matchms CosineGreedy": matchms_similarity(ret_items, modified=False),
                  "matchms ModifiedCosineGreedy": matchms_similarity(ret_items, modified=True),
                  **{f"{name} (cosine)": embedding_similarity(f["test"][ret]) for name, f in features.items()}}
    results["retrieval"], hit1 = {}, {}
    for name, sim in similarity.items():
        queries, first = first_hits(sim, keys[ret])
        results["retrieval"][name] = hit_rates(first)
        hit1[name] = (first < 1).astype(float)
    # the queries depend on the keys alone, so every ranking has the same ones
    groups = {"fingerprint": keys[fp["test"][1]], "rt": keys[rt_ok["test"]],
              "candidates": keys[fp["test"][1]][candidates.rows], "retrieval": keys[ret][queries]}
    results["versus baselines"] = compare(rows, hit1, groups, seed)
    return results


def _structure_keys(inchikeys) -> np.ndarray:
    """InChIKey first block per spectrum; a spectrum without one is its own structure."""
    keys = np.array([(k or "").split("-")[0] for k in inchikeys], dtype=object)
    keys[keys == ""] = np.array([f"missing:{i}" for i in np.flatnonzero(keys == "")], dtype=object)
    return keys


def _heads(x, fp, meta, rt_ok, scaler, candidates, n_bits, epochs, seed) -> dict[str, np.ndarray]:
    """One seed's fingerprint and RT heads, scored per test row (see compare.PER_ROW)."""
    scores, prob = _fingerprint(x, fp, n_bits, epochs, seed)
    ranks = rank_candidates(prob, candidates)["ranks"]
    return {**scores, **_rt(x, meta, rt_ok, scaler, epochs, seed), "candidate_rank": ranks,
            "candidate_hit@1": (ranks == 1).astype(float)}


def _fingerprint(x, fp, n_bits, epochs, seed) -> tuple[dict, np.ndarray]:
    (ytr, vtr), (yte, vte) = fp["train"], fp["test"]
    torch.manual_seed(seed)  # each feature set's head starts alike, whatever was fitted before it
    head = FingerprintHead(x["train"].shape[1], n_bits)
    head = fit(head, (x["train"][vtr], torch.from_numpy(ytr[vtr]).float()),
               lambda h, a, y: F.binary_cross_entropy_with_logits(h(a), y), epochs=epochs, seed=seed)
    with torch.no_grad():
        prob = torch.sigmoid(head(x["test"][vte])).numpy()
    return {"fingerprint_tanimoto": tanimoto_rows(prob > 0.5, yte[vte]),
            "fingerprint_cosine": cosine_rows(prob, yte[vte].astype(float))}, prob


def _rt(x, meta, ok, scaler, epochs, seed) -> dict[str, np.ndarray]:
    def parts(k):
        systems = meta[k]["run_id"][ok[k]]
        rt = meta[k]["rt"][ok[k]].astype(np.float64)
        return systems, rt, torch.from_numpy(scaler.codes(systems))

    s_tr, rt_tr, g_tr = parts("train")
    s_va, rt_va, g_va = parts("val")
    s_te, rt_te, g_te = parts("test")
    torch.manual_seed(seed)
    head = GaussianHead(x["train"].shape[1], groups=len(scaler.index))
    z = torch.from_numpy(scaler.transform(s_tr, rt_tr))
    head = fit(head, (x["train"][ok["train"]], g_tr, z),
               lambda h, a, g, t: F.gaussian_nll_loss(h(a, g)[0], t, h(a, g)[1].exp()), epochs=epochs, seed=seed)
    with torch.no_grad():
        mean, log_var = head(x["test"][ok["test"]], g_te)
        mean_va, log_var_va = head(x["val"][ok["val"]], g_va)
    scale = 1.0
    if len(rt_va) >= MIN_CALIBRATION_ROWS:  # in standardised units, so one factor serves every LC system
        scale = std_scale(mean_va.numpy(), np.exp(0.5 * log_var_va.numpy()), scaler.transform(s_va, rt_va))
    mean_s = scaler.inverse(s_te, mean.numpy())
    std_s = np.exp(0.5 * log_var.numpy()) * scaler.scale(s_te)
    raw = regression_rows(mean_s, std_s, rt_te)
    return {**{f"rt_{k}": v for k, v in regression_rows(mean_s, std_s * scale, rt_te).items()},
            "rt_in_68_raw": raw["in_68"], "rt_in_95_raw": raw["in_95"], "rt_std_scale": np.array([scale])}


def _summary(runs: list[dict]) -> dict[str, float]:
    """Each metric's mean over seeds, and for the headline ones the spread between seeds (sample SD)."""
    per_seed = {name: np.array([r[row].mean() for r in runs]) for name, row in (
        ("fingerprint_tanimoto", "fingerprint_tanimoto"), ("fingerprint_cosine", "fingerprint_cosine"),
        ("rt_mae", "rt_abs_error"), ("rt_coverage_68", "rt_in_68"), ("rt_coverage_95", "rt_in_95"),
        ("rt_coverage_68_raw", "rt_in_68_raw"), ("rt_coverage_95_raw", "rt_in_95_raw"),
        ("rt_std_scale", "rt_std_scale"))}
    out = {name: float(v.mean()) for name, v in per_seed.items()}
    return out | {f"{name}_sd": _sd(per_seed[name]) for name in ("fingerprint_tanimoto", "rt_mae")}


def _mean_hits(per_seed: list[dict]) -> dict:
    out = {k: float(np.mean([h[k] for h in per_seed])) for k in per_seed[0]}
    return out | {"queries": per_seed[0]["queries"], "hit@1_sd": _sd(np.array([h["hit@1"] for h in per_seed]))}


def _sd(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def render(results: dict) -> str:
    n_seeds = len(results.get("seeds", [0]))
    lines = [f"train {results['n_train']:,} spectra; test {results['n_test']:,} (structure-disjoint), "
             f"{results['n_test_fingerprint']:,} with a structure, {results['n_test_rt']:,} with RT in a known LC system; "
             f"heads fitted with {n_seeds} seed(s): mean ± SD between seeds",
             f"RT intervals: standard deviations scaled on {results.get('n_val_rt', 0):,} validation spectra "
             "(structure-disjoint); 'raw' is before, 'scale' the factor",
             f"{'features':<28}{'FP Tanimoto':>15}{'FP cosine':>11}{'RT MAE (s)':>15}{'in 68%':>8}{'in 95%':>8}"
             f"{'raw 68/95%':>12}{'scale':>7}"]
    for name, r in results["features"].items():
        raw = f"{r.get('rt_coverage_68_raw', float('nan')):.2f}/{r.get('rt_coverage_95_raw', float('nan')):.2f}"
        lines.append(f"{name:<28}{r['fingerprint_tanimoto']:>9.3f}±{r.get('fingerprint_tanimoto_sd', 0):.3f}"
                     f"{r['fingerprint_cosine']:>11.3f}{r['rt_mae']:>10.1f}±{r.get('rt_mae_sd', 0):>4.1f}"
                     f"{r['rt_coverage_68']:>8.2f}{r['rt_coverage_95']:>8.2f}{raw:>12}"
                     f"{r.get('rt_std_scale', float('nan')):>7.2f}")
    first = next(iter(results["retrieval"].values()))
    lines.append(f"retrieval within the test split ({first['queries']:,} queries with another spectrum of their structure)")
    lines.append(f"{'ranking':<40}{'hit@1':>7}{'hit@5':>7}{'hit@20':>8}")
    for name, r in results["retrieval"].items():
        lines.append(f"{name:<40}{r['hit@1']:>7.3f}{r['hit@5']:>7.3f}{r['hit@20']:>8.3f}")
    ranking = results["candidate ranking"]
    first = next(iter(ranking.values()))
    lines.append(f"structure annotation: predicted fingerprint -> candidates within {results['candidate_ppm']:g} ppm "
                 f"of the structure's mass ({first['queries']:,} queries, {first['mean candidates']:.1f} candidates "
                 f"on average)")
    lines.append(f"{'fingerprint from':<40}{'hit@1':>7}{'hit@5':>7}{'hit@20':>8}")
    for name, r in ranking.items():
        lines.append(f"{name:<40}{r['hit@1']:>7.3f}{r['hit@5']:>7.3f}{r['hit@20']:>8.3f}")
    lines.append(f"{'random ranking (expected)':<40}{first['random hit@1']:>7.3f}{first['random hit@5']:>7.3f}"
                 f"{first['random hit@20']:>8.3f}")
    if results.get("versus baselines"):
        lines.append(render_comparisons(results["versus baselines"]))
    return "\n".join(lines)
