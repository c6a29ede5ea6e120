"""Fingerprint and RT heads on frozen features, scored on the structure-disjoint test split.

Features compared in one run: the pretrained encoder's [CLS] embedding and the mean of its peak tokens,
the same two from the architecture with random weights, and a binned spectrum (the classic MLP input).
The heads, their initial weights and their training are the same for all five, so differences come from
the features.
"""
import numpy as np
import torch
import torch.nn.functional as F

from megatron_nexa.data.source import SpectraSource
from megatron_nexa.eval.features import binned, spectra, subset
from megatron_nexa.eval.metrics import cosine, regression, tanimoto
from megatron_nexa.eval.retrieval import embedding_similarity, hits_at_k, matchms_similarity
from megatron_nexa.finetune.candidates import build_library, candidate_sets, hits, rank_candidates
from megatron_nexa.finetune.fit import fit
from megatron_nexa.finetune.heads import FingerprintHead, GaussianHead
from megatron_nexa.finetune.targets import RTScaler, morgan_fingerprints
from megatron_nexa.inference import Pooling, embed_pooled, load_model


def evaluate(model_dir: str, data_root: str, max_train: int | None = 20000, epochs: int = 30, n_bits: int = 2048,
             seed: int = 0, ppm: float = 10.0) -> dict:
    from transformers import AutoConfig, AutoModel

    train_src, test_src = SpectraSource(data_root, "train"), SpectraSource(data_root, "test")
    tr, te = subset(len(train_src), max_train, seed), np.arange(len(test_src))
    meta = {name: {col: src.view.column(col)[idx] for col in ("smiles", "rt", "run_id")}
            for name, src, idx in (("train", train_src, tr), ("test", test_src, te))}
    items = {"train": spectra(train_src, tr), "test": spectra(test_src, te)}
    torch.manual_seed(seed)
    random_model = AutoModel.from_config(AutoConfig.from_pretrained(model_dir, trust_remote_code=True),
                                         trust_remote_code=True)
    pretrained = load_model(model_dir)
    pooled = {name: {k: embed_pooled(v, m)[0] for k, v in items.items()}  # one encoder pass per split
              for name, m in (("pretrained", pretrained), ("random-init", random_model))}
    features = {
        "pretrained encoder": {k: v[Pooling.CLS] for k, v in pooled["pretrained"].items()},
        "random-init encoder": {k: v[Pooling.CLS] for k, v in pooled["random-init"].items()},
        "pretrained, mean of peaks": {k: v[Pooling.MEAN] for k, v in pooled["pretrained"].items()},
        "random-init, mean of peaks": {k: v[Pooling.MEAN] for k, v in pooled["random-init"].items()},
        "binned spectrum": {k: binned(v) for k, v in items.items()},
    }
    fp = {k: morgan_fingerprints(list(meta[k]["smiles"]), n_bits) for k in meta}
    scaler = RTScaler(meta["train"]["run_id"], meta["train"]["rt"].astype(np.float64))
    rt_ok = {k: scaler.known(meta[k]["run_id"], meta[k]["rt"].astype(np.float64)) for k in meta}
    results = {"n_train": len(tr), "n_test": len(te), "n_test_fingerprint": int(fp["test"][1].sum()),
               "n_test_rt": int(rt_ok["test"].sum()), "features": {}, "candidate ranking": {}}
    # candidate structures: every structure in the shipped data (all splits), filtered per query by mass
    library = build_library([s for split in ("train", "val", "test")
                             for s in SpectraSource(data_root, split).view.column("smiles")], n_bits)
    candidates = candidate_sets(meta["test"]["smiles"][fp["test"][1]], library, ppm)
    for name, feats in features.items():
        x = {k: torch.from_numpy(np.nan_to_num(v)).float() for k, v in feats.items()}
        scores, prob = _fingerprint(x, fp, n_bits, epochs, seed)
        results["features"][name] = {**scores, **_rt(x, meta, rt_ok, scaler, epochs, seed)}
        results["candidate ranking"][name] = hits(**rank_candidates(prob, candidates))
    results["candidate_ppm"] = ppm
    keys = np.array([(k or "").split("-")[0] for k in test_src.view.column("inchikey")[te]], dtype=object)
    keys[keys == ""] = np.array([f"missing:{i}" for i in np.flatnonzero(keys == "")], dtype=object)
    results["retrieval"] = {
        "matchms CosineGreedy": hits_at_k(matchms_similarity(items["test"], modified=False), keys),
        "matchms ModifiedCosineGreedy": hits_at_k(matchms_similarity(items["test"], modified=True), keys),
        **{f"{name} (cosine)": hits_at_k(embedding_similarity(features[name]["test"]), keys) for name in features}}
    return results


def _fingerprint(x, fp, n_bits, epochs, seed) -> dict:
    (ytr, vtr), (yte, vte) = fp["train"], fp["test"]
    torch.manual_seed(seed)  # each feature set's head starts alike, whatever was fitted before it
    head = FingerprintHead(x["train"].shape[1], n_bits)
    head = fit(head, (x["train"][vtr], torch.from_numpy(ytr[vtr]).float()),
               lambda h, a, y: F.binary_cross_entropy_with_logits(h(a), y), epochs=epochs, seed=seed)
    with torch.no_grad():
        prob = torch.sigmoid(head(x["test"][vte])).numpy()
    scores = {"fingerprint_tanimoto": tanimoto(prob > 0.5, yte[vte]),
              "fingerprint_cosine": cosine(prob, yte[vte].astype(float))}
    return scores, prob


def _rt(x, meta, ok, scaler, epochs, seed) -> dict:
    def parts(k):
        systems = meta[k]["run_id"][ok[k]]
        rt = meta[k]["rt"][ok[k]].astype(np.float64)
        return systems, rt, torch.from_numpy(scaler.codes(systems))

    s_tr, rt_tr, g_tr = parts("train")
    s_te, rt_te, g_te = parts("test")
    torch.manual_seed(seed)
    head = GaussianHead(x["train"].shape[1], groups=len(scaler.index))
    z = torch.from_numpy(scaler.transform(s_tr, rt_tr))
    head = fit(head, (x["train"][ok["train"]], g_tr, z),
               lambda h, a, g, t: F.gaussian_nll_loss(h(a, g)[0], t, h(a, g)[1].exp()), epochs=epochs, seed=seed)
    with torch.no_grad():
        mean, log_var = head(x["test"][ok["test"]], g_te)
    mean_s = scaler.inverse(s_te, mean.numpy())
    std_s = np.exp(0.5 * log_var.numpy()) * scaler.scale(s_te)
    return {f"rt_{k}": v for k, v in regression(mean_s, std_s, rt_te).items()}


def render(results: dict) -> str:
    lines = [f"train {results['n_train']:,} spectra; test {results['n_test']:,} (structure-disjoint), "
             f"{results['n_test_fingerprint']:,} with a structure, {results['n_test_rt']:,} with RT in a known LC system",
             f"{'features':<28}{'FP Tanimoto':>12}{'FP cosine':>11}{'RT MAE (s)':>12}{'in 68%':>8}{'in 95%':>8}"]
    for name, r in results["features"].items():
        lines.append(f"{name:<28}{r['fingerprint_tanimoto']:>12.3f}{r['fingerprint_cosine']:>11.3f}"
                     f"{r['rt_mae']:>12.1f}{r['rt_coverage_68']:>8.2f}{r['rt_coverage_95']:>8.2f}")
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
    return "\n".join(lines)
