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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DS_ACCELERATOR", "cpu" if not torch.cuda.is_available() else "cuda")

from megatron_nexa.config import load_config  # noqa: E402
from megatron_nexa.testing import engine_step, synthetic_batch  # noqa: E402
from megatron_nexa.tokens import TokenType  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


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
