"""``nexa-eval --model HF_DIR --data VERSION_DIR``: fingerprint and RT heads on frozen features of the
pretrained encoder, a random-init encoder and binned spectra; retrieval by structure, also by matchms cosine,
spectral entropy, spec2vec and an MS2DeepScore-style Siamese model; the Spearman correlation of each similarity
with structural (Tanimoto) similarity and the Tanimoto of each query's top-5 neighbours; predicted fingerprint →
candidate structures ranking; each pretrained feature set against its baselines with a 95 % interval. Scored on
the structure-disjoint test split and, beside it, on the test spectra of whole labs held out of training. A
table, JSON and a PNG."""
import argparse
import json
import sys
from pathlib import Path

from megatron_nexa.cli.inputs import at_least, fraction, lab_names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nexa-eval", description=__doc__)
    p.add_argument("--model", required=True, help="a Hugging Face folder written by nexa-convert to-hf")
    p.add_argument("--data", required=True, help="a dataset version (split by InChIKey block)")
    p.add_argument("--max-train", type=at_least(0), default=20000,
                   help="training spectra for the heads, spec2vec and the Siamese model (default 20000); 0 = all")
    p.add_argument("--epochs", type=at_least(1), default=30,
                   help="epochs of the heads, spec2vec and the Siamese model (default 30)")
    p.add_argument("--seeds", type=at_least(1), default=3,
                   help="fit every head this many times (mean, SD between seeds; default 3)")
    p.add_argument("--max-retrieval", type=at_least(0), default=2500,
                   help="retrieval library: at most this many test spectra (matchms scores every pair; default "
                        "2500); 0 = all")
    p.add_argument("--ppm", type=at_least(0.0, float, strict=True), default=10.0,
                   help="candidate structures: mass within this of the query's (default 10)")
    labs = p.add_mutually_exclusive_group()
    labs.add_argument("--lab-fraction", type=fraction, default=0.15,
                      help="hold out whole labs (run-id prefix: MassBank's contributor) up to this share of all "
                           "spectra for the lab- and structure-disjoint test (default 0.15); 0 = none")
    labs.add_argument("--holdout-labs", type=lab_names, default=None,
                      help="comma-separated labs to hold out instead of --lab-fraction's choice; a lab named like "
                           "another plus '_…' is part of it and is named by the other")
    p.add_argument("--pairs", type=at_least(1), default=20000,
                   help="spectrum pairs sampled per library for the Spearman correlation with Tanimoto (default "
                        "20000)")
    p.add_argument("--out", help="write the results as JSON here too")
    p.add_argument("--figure", help="write the PNG figure here (default: beside --out, .png)")
    args = p.parse_args(argv)
    from megatron_nexa.cli.errors import user_error
    from megatron_nexa.cli.inputs import InputError, dataset_version, hf_export, output_file

    figure = args.figure or (str(Path(args.out).with_suffix(".png")) if args.out else None)
    try:  # before torch, transformers or the data are loaded: the run takes minutes to tens of minutes
        hf_export(args.model, "--model")
        dataset_version(args.data, "--data", ("train", "val", "test"))
        for name, path in (("--out", args.out), ("--figure", figure)):
            if path:
                output_file(path, name)
    except InputError as e:
        return user_error("nexa-eval", e)
    from megatron_nexa.downstream.retrieval import LibraryError
    from megatron_nexa.eval.figure import plot_evaluation
    from megatron_nexa.eval.lab_split import LabError
    from megatron_nexa.eval.report import render
    from megatron_nexa.eval.run import evaluate

    try:
        results = evaluate(args.model, args.data, args.max_train, args.epochs, ppm=args.ppm, seeds=args.seeds,
                           max_retrieval=args.max_retrieval or None, lab_fraction=args.lab_fraction,
                           held_out_labs=args.holdout_labs, n_pairs=args.pairs,
                           log=lambda message: print(f"[nexa-eval] {message}", file=sys.stderr, flush=True))
    except (LabError, LibraryError) as e:
        return user_error("nexa-eval", e)
    print(render(results))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    if figure:
        print(f"figure: {plot_evaluation(results, figure)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
