"""``nexa-finetune --config configs/finetune/fingerprint.yaml [--ds_config JSON] [--key=value …]``: a task
head on the pretrained encoder (frozen, unfrozen, or unfrozen after N steps), through DeepSpeed;
scored on the structure-disjoint test split beside a baseline from the same run.

    nexa-finetune --config configs/finetune/rt.yaml --steps=500 --unfreeze_after=100
    deepspeed --num_gpus 8 --module megatron_nexa.cli.finetune \
    --config configs/finetune/fingerprint.yaml --ds_config ds_configs/zero2.json
"""
import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nexa-finetune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="a FinetuneConfig YAML (configs/finetune/)")
    p.add_argument("--ds_config", default="ds_configs/zero3_cpu.json", help="DeepSpeed JSON (any ZeRO stage)")
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)
    args, overrides = p.parse_known_args(argv)
    from megatron_nexa.cli.errors import user_error
    from megatron_nexa.config import ConfigError

    try:  # every input checked before torch, DeepSpeed or the data are loaded
        cfg = check_inputs(args.config, args.ds_config, overrides)
    except (ConfigError, OSError) as e:
        return user_error("nexa-finetune", e)
    from megatron_nexa.finetune.train import Finetuner

    try:
        finetuner = Finetuner(cfg, args.ds_config)
    except (ConfigError, ValueError, OSError) as e:  # what only the weights or the data show (a shape, a split)
        return user_error("nexa-finetune", e)
    results = finetuner.run()
    import torch.distributed as dist

    if dist.get_rank() == 0:
        print(json.dumps(results, indent=1))
        print(f"saved: {cfg.out_dir}/model.safetensors, results.json")
    dist.barrier()
    dist.destroy_process_group()
    return 0


def check_inputs(config: str, ds_config: str, overrides: list[str]):
    """The config (YAML and overrides), the DeepSpeed JSON, the ``init`` export, the ``data`` version with the
    task's splits and ``out_dir``: each wrong one a ``ConfigError`` naming where its value came from."""
    from megatron_nexa.cli.inputs import InputError, dataset_version, hf_export, output_dir
    from megatron_nexa.config import ConfigError, load_dataclass
    from megatron_nexa.finetune.config import FinetuneConfig, Task
    from megatron_nexa.engine.ds_config import load_ds_config

    cfg = load_dataclass(FinetuneConfig, config, overrides)
    load_ds_config(ds_config)
    splits = ("train", "val", "test") if cfg.task in (Task.RT, Task.CCS) else ("train", "test")
    for key, check in (("init", lambda: hf_export(cfg.init, "init", code=False)),
                       ("data", lambda: dataset_version(cfg.data, "data", splits)),
                       ("out_dir", lambda: output_dir(cfg.out_dir, "out_dir"))):
        try:
            check()
        except InputError as e:
            raise ConfigError(f"{_source(key, config, overrides)}: {e}", key) from None
    return cfg


def _source(key: str, config: str, overrides: list[str]) -> str:
    """Where ``key``'s value came from: the last command-line override that set it, else the YAML."""
    for item in reversed(overrides):
        if item.removeprefix("--").partition("=")[0] == key:
            return f"command line {item!r}"
    return config


if __name__ == "__main__":
    sys.exit(main())
