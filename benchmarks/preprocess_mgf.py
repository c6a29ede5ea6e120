"""MGF → shards on one core, against pyteomics' bare MGF read and matchms' load_from_mgf of the same file.

    python benchmarks/preprocess_mgf.py [--file ../shared/data/massbank/massbank_lcmsms_CC-BY.mgf.gz]

All three read the same gzipped MassBank file, best of 3, in this run. The goal: the whole pipeline
(parse, filter, hash, split, dedup, shard, checksums) costs little more than pyteomics' bare parse.
"""
import argparse
import gzip
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import best_of  # noqa: E402
from megatron_nexa.data.filters import PreprocessSettings  # noqa: E402
from megatron_nexa.data.preprocess import JobOptions, preprocess  # noqa: E402

DEFAULT = Path(__file__).resolve().parents[2] / "shared/data/massbank/massbank_lcmsms_CC-BY.mgf.gz"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--file", default=str(DEFAULT))
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    from matchms.importing import load_from_mgf
    from pyteomics import mgf

    n = 0

    def bare():
        nonlocal n
        with gzip.open(args.file, "rt") as f:
            n = sum(1 for _ in mgf.read(f, use_index=False))

    def matchms():
        with gzip.open(args.file, "rt") as f:
            sum(1 for _ in load_from_mgf(f))

    tmp = Path(tempfile.mkdtemp(prefix="nexa-bench-"))

    def pipeline():
        shutil.rmtree(tmp / "out", ignore_errors=True)
        preprocess([args.file], str(tmp / "out"), "bench", 1, PreprocessSettings(), JobOptions(progress=False),
                   log=lambda *_: None)

    try:
        t_bare, t_matchms, t_pipe = (best_of(f, args.repeats) for f in (bare, matchms, pipeline))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{Path(args.file).name}: {n:,} spectra, one core, best of {args.repeats}")
    print(f"  pyteomics mgf.read (bare parse) : {n / t_bare:>9,.0f} spectra/s")
    print(f"  matchms load_from_mgf           : {n / t_matchms:>9,.0f} spectra/s")
    print(f"  nexa-preprocess (whole pipeline): {n / t_pipe:>9,.0f} spectra/s")
    print(f"  pipeline time / pyteomics parse : {t_pipe / t_bare:.2f}x")
    print(f"  pipeline time / matchms load    : {t_pipe / t_matchms:.2f}x")


if __name__ == "__main__":
    main()
