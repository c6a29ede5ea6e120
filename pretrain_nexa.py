#!/usr/bin/env python
"""Pretrain Nexa-Spec.

    deepspeed pretrain_nexa.py --ds_config ds_configs/zero3.json --config configs/pretrain_3b.yaml
    torchrun --nproc_per_node 2 pretrain_nexa.py --ds_config ds_configs/zero3_cpu.json --config configs/demo.yaml
    python pretrain_nexa.py --ds_config ds_configs/zero3_cpu.json --config configs/demo.yaml --train.train_steps=10

Any ``--section.key=value`` overrides the YAML (e.g. ``--optim.lr=1e-4``). Rerunning the same command
resumes from the run directory's ``latest`` checkpoint.
"""
import argparse
import sys

from megatron_nexa.config import ConfigError, load_config
from megatron_nexa.engine.trainer import Trainer, TrainingAborted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="run config YAML (see configs/)")
    parser.add_argument("--ds_config", required=True, help="DeepSpeed JSON (see ds_configs/)")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by the deepspeed launcher
    args, overrides = parser.parse_known_args(argv)
    try:
        cfg = load_config(args.config, overrides)
        trainer = Trainer(cfg, args.ds_config)
    except ConfigError as e:
        print(f"pretrain_nexa: config error: {e}", file=sys.stderr)
        return 2
    try:
        trainer.train()
    except TrainingAborted as e:
        print(f"pretrain_nexa: aborted: {e}", file=sys.stderr)
        return 3
    finally:
        trainer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
