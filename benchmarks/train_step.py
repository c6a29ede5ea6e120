"""Training-step throughput through the real DeepSpeed engine (this machine: CPU, or a GPU if present).

    python benchmarks/train_step.py [--models tiny small] [--steps 20] [--ds-config ds_configs/zero3_cpu.json]

One process, synthetic spectra of the model's full length (all peak slots used), ZeRO-3 with torch AdamW,
timing full optimiser steps (forward, backward, update) after warm-up. Prints steps/s and tokens/s per
model and, as the baseline measured in the same run, the same model as plain PyTorch (the reference
encoder + heads, torch AdamW, no DeepSpeed), with the engine's cost as a ratio.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DS_ACCELERATOR", "cpu" if not torch.cuda.is_available() else "cuda")

from megatron_nexa.config import load_config  # noqa: E402
from megatron_nexa.data.batch import Batch  # noqa: E402
from megatron_nexa.data.masking import IGNORE, mz_bins  # noqa: E402
from megatron_nexa.tokens import TokenType  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MASKED_SHARE = 0.2  # of the peaks, in synthetic_batch


def synthetic_batch(cfg, rows: int, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    length = cfg.model.max_peaks + 2
    tt = np.full((rows, length), TokenType.PEAK, np.int64)
    tt[:, 0], tt[:, 1] = TokenType.CLS, TokenType.PREC
    mz = np.sort(rng.uniform(50, 900, (rows, length)), axis=1).astype(np.float32)
    inten = rng.uniform(0.01, 1, (rows, length)).astype(np.float32)
    masked = (rng.random((rows, length)) < MASKED_SHARE) & (tt == TokenType.PEAK)
    tt[masked] = TokenType.MASK
    mz_t = np.where(masked, rng.integers(0, cfg.model.mz_bins, (rows, length)), IGNORE)
    int_t = np.where(masked, rng.integers(0, cfg.model.intensity_bins, (rows, length)), IGNORE)
    peak = (tt == TokenType.PEAK) | masked
    peak_bin = np.where(masked, mz_t, np.where(peak, mz_bins(mz, cfg.model), IGNORE))
    peak_weight = np.where(peak, np.sqrt(inten), 0).astype(np.float32)
    t = torch.from_numpy
    return Batch(t(tt), t(mz), t(inten), torch.zeros(rows, length, dtype=torch.int64), t(mz_t), t(int_t),
                 t(peak_bin), t(peak_weight), torch.zeros(rows, dtype=torch.bool), torch.zeros(rows),
                 torch.full((rows,), -1), torch.full((rows,), -1),
                 torch.arange(rows), torch.zeros(rows, dtype=torch.int64), torch.zeros(rows, 2, dtype=torch.int64))


def engine_step(built, batch: Batch) -> torch.Tensor:
    """One optimiser step of the real engine on ``batch`` (forward, losses, backward, update); the loss."""
    from megatron_nexa.losses import pretraining_terms

    loss = pretraining_terms(batch, built.engine(*batch.model_inputs()), built.cfg.loss)["loss"]
    built.engine.backward(loss)
    built.engine.step()
    return loss


def time_steps(step, steps: int) -> float:
    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=["tiny", "small"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--ds-config", default=str(REPO / "ds_configs/zero3_cpu.json"))
    args = p.parse_args()
    from megatron_nexa.engine.setup import build
    from megatron_nexa.losses import pretraining_terms
    from megatron_nexa.model.pretraining import NexaSpecForPretraining
    from megatron_nexa.model.reference import ReferenceEncoder

    for name in args.models:
        cfg = load_config(REPO / f"configs/model/{name}.yaml", ["train.global_batch_size=" + str(
            load_config(REPO / f"configs/model/{name}.yaml").train.micro_batch_size)])
        built = build(cfg, args.ds_config)
        batch = synthetic_batch(cfg, cfg.train.micro_batch_size).to(built.device)

        t_engine = time_steps(lambda: engine_step(built, batch), args.steps)
        torch.manual_seed(0)
        plain = NexaSpecForPretraining(cfg.model, ReferenceEncoder(cfg.model)).to(built.device)
        opt = torch.optim.AdamW(plain.parameters(), lr=1e-4)

        def plain_step():
            opt.zero_grad(set_to_none=True)
            out = plain(*batch.model_inputs())
            pretraining_terms(batch, out, cfg.loss)["loss"].backward()
            opt.step()

        t_plain = time_steps(plain_step, args.steps)
        tokens = int((batch.token_type != TokenType.PAD).sum())
        print(f"{name:>6} (micro-batch {cfg.train.micro_batch_size} x {cfg.model.max_peaks + 2} tokens, {built.device}): "
              f"DeepSpeed ZeRO-3 {1 / t_engine:6.2f} steps/s {tokens / t_engine:9,.0f} tokens/s | plain PyTorch "
              f"{1 / t_plain:6.2f} steps/s {tokens / t_plain:9,.0f} tokens/s | engine/plain time {t_engine / t_plain:.2f}x")


if __name__ == "__main__":
    main()
