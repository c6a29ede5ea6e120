"""Peak RSS of nexa-preprocess as the input grows 10x: it should stay about the same.

    python benchmarks/preprocess_memory.py [--spectra 100000]

Runs the pipeline (workers=1) in a fresh interpreter on GeMS-like files of N and 10 N spectra and
prints each child's peak resident memory. Chunked reading, streamed shard writing and an 8-byte-per-
spectrum duplicate index keep memory flat; only that index grows (8 bytes x written spectra).
"""
import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import child_peak_rss_mb  # noqa: E402
from megatron_nexa.testing import write_gems  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--spectra", type=int, default=100_000)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nexa-mem-"))
    try:
        peaks = {}
        for n in (args.spectra, 10 * args.spectra):
            src = tmp / f"g{n}.hdf5"
            write_gems(src, n, peaks=128, seed=1, chunk_rows=16384)
            code = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
                    "from megatron_nexa.data.preprocess import preprocess, JobOptions\n"
                    "from megatron_nexa.data.filters import PreprocessSettings\n"
                    f"preprocess([{str(src)!r}], {str(tmp / 'out')!r}, 'm', {n}, PreprocessSettings(min_peaks=1), "
                    "JobOptions(progress=False), log=lambda *_: None)")
            peaks[n] = child_peak_rss_mb(code)
            src.unlink()
        small, large = peaks.values()
        print(f"peak RSS, {args.spectra:,} spectra: {small:7.0f} MB")
        print(f"peak RSS, {10 * args.spectra:,} spectra: {large:7.0f} MB   ratio {large / small:.2f}x for 10x the input")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
