"""``nexa-embed MODEL INPUT… --out emb.npy``: embeddings of MGF/mzML spectra with a Hugging Face model
([CLS], or with ``--pooling mean`` the mean of the peak tokens)."""
import argparse
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nexa-embed", description=__doc__)
    p.add_argument("model", help="a Hugging Face folder written by nexa-convert to-hf")
    p.add_argument("inputs", nargs="+", help="MGF/mzML files (gzipped or not)")
    p.add_argument("--out", required=True, help="output .npy, one row per input spectrum (NaN if not embeddable)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--pooling", choices=["cls", "mean"], default="cls",
                   help="[CLS] token, or the mean of the peak tokens")
    args = p.parse_args(argv)
    from megatron_nexa.inference import embed

    emb = embed(args.inputs, args.model, batch_size=args.batch_size, device=args.device, progress=True,
                pooling=args.pooling)
    np.save(args.out, emb)
    print(f"{args.out}: {emb.shape[0]:,} x {emb.shape[1]} ({int(np.isnan(emb[:, 0]).sum()):,} NaN rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
