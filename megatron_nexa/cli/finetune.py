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
    from megatron_nexa.config import ConfigError, FinetuneConfig, load_dataclass

    from megatron_nexa.finetune.train import Finetuner

    try:
        finetuner = Finetuner(load_dataclass(FinetuneConfig, args.config, overrides), args.ds_config)
    except ConfigError as e:
        print(f"nexa-finetune: config error: {e}", file=sys.stderr)
        return 2
    cfg = finetuner.cfg
    results = finetuner.run()
    import torch.distributed as dist

    if dist.get_rank() == 0:
        print(json.dumps(results, indent=1))
        print(f"saved: {cfg.out_dir}/model.safetensors, results.json")
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
