"""Why a pretrained [CLS] does or does not match the binned-spectrum cosine at retrieval: the same libraries and
queries as ``nexa-eval`` (structure-disjoint test, and the test spectra of the held-out labs), ranked by

- each named export's [CLS] and mean of peaks (name several checkpoints of one run for a learning curve),
- the first export's architecture with random weights (baseline (c)),
- the binned spectrum (1 Da, sqrt intensity; baseline (b)), and the binned spectrum squeezed to d dimensions, by a
  random Gaussian projection and by PCA fitted on training spectra outside the held-out labs: how much retrieval a
  d-dimensional vector can keep, the encoder's hidden size among the d.

``python benchmarks/retrieval_ablation.py --data data_out/massbank_v2 --holdout-labs A,B,... NAME=HF_DIR ...``

Prints hit@1 per ranking and test set, and each ranking minus the binned cosine with a 95 % interval from
resampling test structures (``metrics.paired_bootstrap``); ``--out`` writes JSON.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from megatron_nexa.cli.errors import user_error  # noqa: E402
from megatron_nexa.cli.inputs import (InputError, at_least, dataset_version, fraction, hf_export,  # noqa: E402
                                       lab_names)
from megatron_nexa.data.source import SpectraSource  # noqa: E402
from megatron_nexa.downstream.features import binned, spectra, structure_groups, subset  # noqa: E402
from megatron_nexa.downstream.metrics import paired_bootstrap, verdict  # noqa: E402
from megatron_nexa.downstream.retrieval import (LibraryError, embedding_similarity, first_hits,  # noqa: E402
                                                retrieval_library)
from megatron_nexa.eval.lab_split import LabError, split_by_lab  # noqa: E402
from megatron_nexa.inference import Pooling, embed_pooled, load_model  # noqa: E402

TESTS = {"test": "structure-disjoint", "lab": "lab- and structure-disjoint"}
RANDOM_INIT = "random-init"


def squeezers(train_binned: np.ndarray, dims: list[int], seed: int) -> dict:
    """name -> function of a binned matrix: random projection and PCA (fitted on ``train_binned``) to d dims."""
    rng = np.random.default_rng(seed)
    mean = train_binned.mean(0)
    _, _, vt = np.linalg.svd(train_binned - mean, full_matrices=False)
    out = {}
    for d in dims:
        proj = rng.normal(size=(train_binned.shape[1], d)) / np.sqrt(d)
        out[f"binned, random projection to {d}"] = lambda x, p=proj: x @ p
        out[f"binned, PCA to {d}"] = lambda x, v=vt[:d].T: (x - mean) @ v
    return out


def named_export(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=HF_DIR")
    return name, path


def dimensions(text: str) -> list[int]:
    try:
        dims = [int(d) for d in text.split(",")]
    except ValueError:
        dims = []
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers, comma-separated")
    return dims


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", type=named_export, help="NAME=HF_DIR (nexa-convert to-hf exports)")
    p.add_argument("--data", required=True, help="a dataset version split by structure (massbank_v2)")
    labs = p.add_mutually_exclusive_group()
    labs.add_argument("--holdout-labs", type=lab_names, default=None, help="as nexa-eval's")
    labs.add_argument("--lab-fraction", type=fraction, default=0.15, help="as nexa-eval's (default 0.15)")
    p.add_argument("--max-retrieval", type=at_least(0), default=2500,
                   help="as nexa-eval's (default 2500; 0 = all)")
    p.add_argument("--max-train", type=at_least(0), default=20000,
                   help="training spectra the PCA is fitted on (default 20000; 0 = all)")
    p.add_argument("--dims", type=dimensions, default=[32, 128, 512],
                   help="comma-separated dimensions for the squeezed binned spectra (default 32,128,512)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="JSON here too")
    args = p.parse_args(argv)
    models = dict(args.models)
    names = [name for name, _ in args.models]
    if len(models) < len(names) or RANDOM_INIT in models:
        p.error(f"model names must be distinct and not {RANDOM_INIT!r} (the random-weights baseline's), got "
                f"{', '.join(names)}")
    try:
        for name, path in models.items():
            hf_export(path, name)
        dataset_version(args.data, "--data", ("train", "val", "test"))
        sources = {k: SpectraSource(args.data, k) for k in ("train", "val", "test")}
        labs = split_by_lab({k: s.view.column("run_id") for k, s in sources.items()}, args.lab_fraction,
                            args.holdout_labs, args.seed)
    except (InputError, LabError) as e:
        return user_error("retrieval_ablation", e)
    torch.manual_seed(args.seed)
    train = spectra(sources["train"], labs.train[subset(len(labs.train), args.max_train or None, args.seed)])
    squeeze = squeezers(binned(train), args.dims, args.seed)
    keys_all = structure_groups(sources["test"].view.column("inchikey"))
    libraries = {}
    for t, rows in (("test", labs.test), ("lab", labs.lab_test)):
        if len(rows):
            keys = keys_all[rows]
            try:
                chosen = retrieval_library(keys, args.max_retrieval or None, args.seed, TESTS[t])  # nexa-eval's
            except LibraryError as e:
                return user_error("retrieval_ablation", e)
            libraries[t] = (spectra(sources["test"], rows[chosen]), keys[chosen])

    from transformers import AutoConfig, AutoModel
    first = next(iter(models.values()))
    encoders = {name: load_model(path) for name, path in models.items()}
    encoders[RANDOM_INIT] = AutoModel.from_config(AutoConfig.from_pretrained(first, trust_remote_code=True),
                                                    trust_remote_code=True)
    results = {}
    for t, (items, keys) in libraries.items():
        features = {"binned spectrum": binned(items)}
        features |= {name: f(features["binned spectrum"]) for name, f in squeeze.items()}
        for name, model in encoders.items():
            pooled = embed_pooled(items, model)[0]
            features[f"{name} [CLS]"], features[f"{name} mean of peaks"] = pooled[Pooling.CLS], pooled[Pooling.MEAN]
        hit1 = {}
        for name, x in features.items():
            queries, first_rank = first_hits(embedding_similarity(x), keys)
            hit1[name] = (first_rank < 1).astype(float)
        groups = keys[queries]
        results[t] = {"queries": int(len(queries)), "rankings": {}}
        print(f"{TESTS[t]}: {len(items):,} library spectra, {len(queries):,} queries")
        print(f"{'ranking':44s} {'hit@1':>6s}  {'minus binned':>12s}  {'95 % interval':>17s}  verdict")
        for name, h in hit1.items():
            diff, low, high = paired_bootstrap(h, hit1["binned spectrum"], groups, seed=args.seed)
            judged = None if name == "binned spectrum" else verdict(True, low, high)
            results[t]["rankings"][name] = {"hit@1": float(h.mean()), "minus_binned": diff, "interval": [low, high],
                                            "verdict": judged}
            row = f"{diff:+12.3f}  [{low:+.3f}, {high:+.3f}]  {judged}" if judged else ""
            print(f"{name:44s} {h.mean():6.3f}  {row}")
    if args.out:
        Path(args.out).write_text(json.dumps({"models": models, "held_out_labs": list(labs.held_out),
                                              "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
