#!/usr/bin/env python
"""Pretrain Nexa-Spec.

    deepspeed pretrain_nexa.py --ds_config ds_configs/zero3.json --config configs/pretrain_3b.yaml
    torchrun --nproc_per_node 2 pretrain_nexa.py --ds_config ds_configs/zero3_cpu.json --config configs/demo.yaml
    python pretrain_nexa.py --ds_config ds_configs/zero3_cpu.json --config configs/demo.yaml --train.train_steps=10

Any ``--section.key=value`` overrides the YAML (e.g. ``--optim.lr=1e-4``). Rerunning the same command
resumes from the run directory's newest sound checkpoint. Exit status: 0 finished or stopped by a signal after
saving, 2 a config, data, checkpoint or run-directory error, 3 too many non-finite steps, 1 anything else.
"""
import argparse
import sys
import traceback

from megatron_nexa.config import ConfigError, load_config
from megatron_nexa.data.source import DataError
from megatron_nexa.engine.checkpoint import CheckpointError
from megatron_nexa.engine.run_lock import RunDirInUse
from megatron_nexa.engine.trainer import Trainer, TrainingAborted, abort


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="run config YAML (see configs/)")
    parser.add_argument("--ds_config", required=True, help="DeepSpeed JSON (see ds_configs/)")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by the deepspeed launcher
    args, overrides = parser.parse_known_args(argv)
    trainer = None
    try:
        trainer = Trainer(load_config(args.config, overrides), args.ds_config)
        trainer.train()
    except ConfigError as e:
        return abort(trainer, f"config error: {e}", 2)
    except (DataError, CheckpointError, RunDirInUse) as e:
        return abort(trainer, str(e), 2)
    except TrainingAborted as e:
        return abort(trainer, f"aborted: {e}", 3)
    except KeyboardInterrupt:
        return abort(trainer, "interrupted by a second Ctrl-C: no checkpoint saved", 130)
    except BaseException:  # a bug: the whole traceback, then the job ends instead of hanging in a collective
        return abort(trainer, traceback.format_exc(), 1)
    trainer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
