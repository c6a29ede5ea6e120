"""Held-out retention-order accuracy of exported models, on pairs of structures never seen in training.

``python benchmarks/retention_order_heldout.py --data data_out/massbank_v2 NAME=HF_DIR ...``

Training logs show retention-order accuracy on training pairs only. Here every model scores the same pairs
from the validation and test splits (structure-disjoint from train; partners from the same LC system with
|ΔRT| > 3 s, drawn as training draws them, seed 0), unmasked, both ways:
- joined: one ``[CLS] [PREC] A [SEP] [PREC] B`` row, logit = r([CLS] of the pair) (card §4.2);
- separate: A and B as single rows, logit = r([CLS]_A) − r([CLS]_B) (``data.pair_input: separate``).
A model is meant to be read in the way it was trained; the other column shows what its head does unasked.
Prints accuracy with a 95 % binomial interval per model, split and way; ``--out`` writes JSON, ``--pairs-out`` the
pairs drawn (split -> [A, B, label]); with no model named, only the pairs are drawn.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from megatron_nexa.data.pairs import draw_partner  # noqa: E402
from megatron_nexa.data.source import SpectraSource  # noqa: E402
from megatron_nexa.data.tokenize import pair_row, single_row, stack_rows  # noqa: E402
from megatron_nexa.downstream.features import spectra  # noqa: E402


def heldout_pairs(source: SpectraSource, max_pairs: int, margin: float, seed: int) -> list[tuple[int, int, float]]:
    """(A, B, label) with label 1.0 when A elutes first; each eligible spectrum anchors at most one pair."""
    rng = np.random.default_rng(seed)
    anchors = np.flatnonzero(np.asarray(source.ro_pos) >= 0)
    rng.shuffle(anchors)
    pairs = []
    for i in anchors:
        j = draw_partner(source, int(i), margin, rng)
        if j is None:
            continue
        a, b = (int(i), j) if rng.random() < 0.5 else (j, int(i))
        pairs.append((a, b, float(source.rt[a] < source.rt[b])))
        if len(pairs) == max_pairs:
            break
    return pairs


@torch.no_grad()
def scores(model, rows: list, batch_size: int = 64) -> np.ndarray:
    """Retention-head output on the [CLS] of each row."""
    out = []
    for start in range(0, len(rows), batch_size):
        out.append(model(*stack_rows(rows[start:start + batch_size])).retention_logit.float().numpy())
    return np.concatenate(out)


def accuracy(logit: np.ndarray, label: np.ndarray) -> dict:
    hit = (logit > 0) == (label > 0.5)
    p, n = float(hit.mean()), len(hit)
    half = 1.96 * np.sqrt(p * (1 - p) / n)
    return {"acc": p, "lo": p - half, "hi": p + half, "n": n}


def evaluate(model, source: SpectraSource, pairs: list) -> dict:
    max_peaks = model.config.max_peaks
    ids = sorted({i for a, b, _ in pairs for i in (a, b)})
    spectrum = dict(zip(ids, spectra(source, np.array(ids))))
    label = np.array([p[2] for p in pairs])
    joined = scores(model, [pair_row(spectrum[a], spectrum[b], max_peaks) for a, b, _ in pairs])
    r = dict(zip(ids, scores(model, [single_row(*spectrum[i], max_peaks) for i in ids])))
    separate = np.array([r[a] - r[b] for a, b, _ in pairs])
    return {"joined": accuracy(joined, label), "separate": accuracy(separate, label)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help="NAME=HF_DIR (a folder written by nexa-convert to-hf)")
    ap.add_argument("--data", required=True, help="a dataset version directory")
    ap.add_argument("--splits", nargs="+", default=["val", "test"])
    ap.add_argument("--max-pairs", type=int, default=2000, help="per split")
    ap.add_argument("--margin", type=float, default=3.0, help="seconds, as data.rt_margin")
    ap.add_argument("--out", help="write the results as JSON here too")
    ap.add_argument("--pairs-out", help="write the pairs drawn as JSON here")
    args = ap.parse_args()
    sources = {s: SpectraSource(args.data, s) for s in args.splits}
    pairs = {s: heldout_pairs(src, args.max_pairs, args.margin, seed=0) for s, src in sources.items()}
    print("pairs drawn: " + ", ".join(f"{s} {len(p)}" for s, p in pairs.items()))
    if args.pairs_out:
        Path(args.pairs_out).write_text(json.dumps(pairs))
    if not args.models:
        return
    from transformers import AutoModelForPreTraining

    results = {}
    print("| model | split | pairs | joined acc [95 %] | separate acc [95 %] |\n|---|---|---|---|---|")
    for spec in args.models:
        name, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"model argument {spec!r}: expected NAME=HF_DIR")
        model = AutoModelForPreTraining.from_pretrained(path, trust_remote_code=True).eval()
        results[name] = {}
        for split, src in sources.items():
            res = results[name][split] = evaluate(model, src, pairs[split])
            cell = {k: f"{v['acc']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}]" for k, v in res.items()}
            print(f"| {name} | {split} | {len(pairs[split])} | {cell['joined']} | {cell['separate']} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
