"""``nexa-dataset verify|inspect|stats|sync``: check, look into, summarise and fetch a dataset version."""
import argparse
import sys

import numpy as np

from megatron_nexa.cli.errors import closed_pipe, user_error
from megatron_nexa.data.manifest import sync, verify
from megatron_nexa.data.version import DatasetVersion


def _verify(args) -> int:
    problems = verify(args.dir)
    for p in problems:
        print(f"MISMATCH {p}")
    if problems:
        print(f"{args.dir}: {len(problems)} problem(s)")
        return 1
    print(f"{args.dir}: OK (every checksum and count matches the manifest)")
    return 0


def _sync(args) -> int:
    m = sync(args.src, args.dst)
    print(f"{args.src} -> {args.dst}: {m.counts['written']:,} spectra, every file checked")
    return 0


def _inspect(args) -> int:
    split = DatasetVersion(args.dir)[args.split]
    mz, inten = split.peaks(args.index)
    print(f"{args.dir} {args.split}[{args.index}]")
    for k, v in split.metadata(args.index).items():
        print(f"  {k:<13} {v}")
    print(f"  {'m/z':>10}  intensity")
    for m, i in zip(mz, inten):
        print(f"  {m:10.4f}  {i:.4f}")
    return 0


def _describe(name: str, values: np.ndarray) -> str:
    values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if not len(values):
        return f"  {name:<14} (none)"
    q = np.percentile(values, [0, 5, 25, 50, 75, 95, 100])
    return f"  {name:<14} n={len(values):>9,}  " + "  ".join(f"{p}%={v:.4g}" for p, v in zip((0, 5, 25, 50, 75, 95, 100), q))


def _stats(args) -> int:
    version = DatasetVersion(args.dir)
    c = version.manifest.counts
    print(f"{args.dir}: in {c['records_in']:,} = written {c['written']:,} + rejected {c['rejected']:,}")
    for reason, n in c["rejected_by_reason"].items():
        print(f"  rejected {n:>9,}  {reason}")
    for name, split in version.splits.items():
        print(f"{name}: {len(split):,} spectra in {len(split.prefixes)} shard(s)")
        if len(split):
            print(_describe("peaks", split.num_peaks()))
            print(_describe("precursor m/z", split.column("precursor_mz")))
            print(_describe("RT (s)", split.column("rt").astype(np.float64)))
            runs = split.column("run_id")
            print(f"  {'runs':<14} {len(set(r for r in runs if r)):,} distinct; "
                  f"{sum(1 for r in runs if not r):,} spectra without one")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nexa-dataset", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="re-check checksums and counts; exit 1 on any mismatch")
    v.add_argument("dir")
    i = sub.add_parser("inspect", help="print one spectrum with its metadata")
    i.add_argument("dir")
    i.add_argument("--index", type=int, required=True)
    i.add_argument("--split", default="train")
    y = sub.add_parser("sync", help="copy a version (e.g. s3://…) to a local directory for training")
    y.add_argument("src")
    y.add_argument("dst")
    s = sub.add_parser("stats", help="peak-count, precursor and RT distributions per split")
    s.add_argument("dir")
    args = p.parse_args(argv)
    try:
        code = {"verify": _verify, "inspect": _inspect, "stats": _stats, "sync": _sync}[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's flush at exit
        return code
    except BrokenPipeError:
        return closed_pipe()
    except (OSError, ValueError, KeyError, IndexError) as e:
        return user_error("nexa-dataset", e)


if __name__ == "__main__":
    sys.exit(main())
