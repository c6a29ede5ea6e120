"""``nexa-embed MODEL INPUT… --out emb.npy``: embeddings of MGF/mzML/GeMS spectra with a Hugging Face model
([CLS], or with ``--pooling mean`` the mean of the peak tokens). Row i is input record i, always (NaN if it
cannot be embedded); ``emb.records.tsv`` beside ``--out emb.npy`` says which record each row is, and why a row is NaN."""
import argparse
import sys
from pathlib import Path

import numpy as np

COLUMNS = ("row", "source", "index", "record", "embedded", "note")


def write_records(path: Path, records) -> None:
    def clean(value) -> str:
        return str(value).replace("\t", " ").replace("\n", " ")

    lines = ["\t".join(COLUMNS)]
    lines += ["\t".join([str(i), clean(r.source), str(r.index), clean(r.record), str(int(r.embedded)), clean(r.note)])
              for i, r in enumerate(records)]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nexa-embed", description=__doc__)
    p.add_argument("model", help="a Hugging Face folder written by nexa-convert to-hf")
    p.add_argument("inputs", nargs="+", help="MGF/mzML files (gzipped or not), GeMS HDF5")
    p.add_argument("--out", required=True, help="output .npy, one row per input record (NaN if not embeddable); "
                                                "OUT.records.tsv beside it (emb.records.tsv for emb.npy) names the record of each row")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--pooling", choices=["cls", "mean"], default="cls",
                   help="[CLS] token, or the mean of the peak tokens")
    args = p.parse_args(argv)
    out = Path(args.out if args.out.endswith(".npy") else args.out + ".npy")  # np.save would add it
    from megatron_nexa.inference import embed_records

    try:
        if not Path(args.model).is_dir():
            raise FileNotFoundError(f"{args.model}: no such folder (expected one written by nexa-convert to-hf)")
        emb, records = embed_records(args.inputs, args.model, pooling=args.pooling, batch_size=args.batch_size,
                                     device=args.device, progress=True)
    except (FileNotFoundError, ValueError, TypeError, OSError) as e:
        print(f"nexa-embed: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    np.save(out, emb)
    tsv = out.with_suffix(".records.tsv")
    write_records(tsv, records)
    notes = sum(1 for r in records if r.embedded and r.note)
    print(f"{out}: {emb.shape[0]:,} x {emb.shape[1]} ({sum(not r.embedded for r in records):,} NaN rows, "
          f"{notes:,} embedded with a remark); records: {tsv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
