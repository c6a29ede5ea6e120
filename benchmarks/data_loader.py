"""Data-loader throughput per CPU core on the real MassBank shards, against what one GPU consumes.

    python benchmarks/data_loader.py [--data data_out/massbank_v2] [--batches 60]

Times, in the main process (one core, no workers), full micro-batches of the nexa_7b shape (256 peaks,
258 tokens, 32 rows): masked-peak batches, and batches that are all retention-order pairs. The baseline,
measured in the same run, is the bare read of as many spectra from the same shards (``SpectraSource.peaks``:
no tokens, masking, pairs or collation). A GPU at the card's 7B step consumes 32 spectra per step; its step time
is estimated from the model FLOPs (3 x forward; forward = 2bs(4h^2 + 2h ffn) + 4bs^2 h per layer) at an assumed
60 % MFU of an H100's 989 TFLOP/s dense bf16. Goal: >= 20x that consumption per core.
"""
import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from megatron_nexa.cluster_plan import forward_flops  # noqa: E402
from megatron_nexa.config import load_config  # noqa: E402
from megatron_nexa.data.loader import build_dataset, build_loader  # noqa: E402
from megatron_nexa.data.source import SpectraSource  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def gpu_spectra_per_s(cfg, peak_tflops=989.0, mfu=0.60) -> float:
    b = cfg.train.micro_batch_size
    step = 3 * forward_flops(cfg.model, b, cfg.model.max_peaks + 2) / (peak_tflops * 1e12 * mfu)
    return b / step


def bare_rate(data: str, samples: int) -> float:
    """Spectra/s of reading random spectra's peaks and precursor from the train split's shards, nothing else."""
    source = SpectraSource(data, "train")
    rows = np.random.default_rng(0).integers(0, len(source), samples)
    t = time.perf_counter()
    for i in rows:
        source.peaks(int(i))
        float(source.precursor_mz[i])
    return samples / (time.perf_counter() - t)


def rate(cfg, pair_fraction: float, batches: int) -> float:
    cfg.data.pair_fraction = pair_fraction
    it = iter(build_loader(build_dataset(cfg, "train"), cfg, 0, 1))
    next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * cfg.train.micro_batch_size / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", help="a preprocessed version; default: preprocess the shipped MassBank now")
    p.add_argument("--batches", type=int, default=60, help="micro-batches timed per kind")
    args = p.parse_args()
    tmp = None
    data = args.data
    if data is None:
        from megatron_nexa.data.filters import PreprocessSettings
        from megatron_nexa.data.preprocess import JobOptions, preprocess

        tmp = Path(tempfile.mkdtemp(prefix="nexa-bench-"))
        files = sorted(str(f) for f in (REPO.parent / "shared/data/massbank").glob("*.mgf.gz"))
        preprocess(files, str(tmp), "massbank", 1, PreprocessSettings(), JobOptions(progress=False), log=lambda *_: None)
        data = str(tmp / "massbank_v1")
    try:
        cfg = load_config(REPO / "configs/model/nexa_7b.yaml", [f"data.sources=[{{path: {data}}}]", "data.num_workers=0"])
        need = gpu_spectra_per_s(cfg)
        bare = bare_rate(data, args.batches * cfg.train.micro_batch_size)
        masked, pairs = rate(cfg, 0.0, args.batches), rate(cfg, 1.0, args.batches)
        print(f"one GPU at the 7B step (32 spectra/step, 60% MFU of 989 TFLOP/s): {need:8.1f} spectra/s")
        print(f"bare read of the shards, one core (baseline): {bare:8.0f} spectra/s")
        print(f"masked-peak batches, one core   : {masked:8.0f} samples/s = {masked / need:6.1f}x the GPU's need "
              f"(goal >= 20x), {bare / masked:5.2f}x the bare read's time")
        print(f"retention-order pairs, one core : {pairs:8.0f} samples/s = {pairs / need:6.1f}x the GPU's need "
              f"(goal >= 20x), {bare / pairs:5.2f}x the bare read's time")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
