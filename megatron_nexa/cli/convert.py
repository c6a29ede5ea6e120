"""``nexa-convert``: ZeRO checkpoint → fp32 PyTorch → Hugging Face, and back.

    nexa-convert zero-to-torch runs/demo model.safetensors [--tag step_00001000]
    nexa-convert to-hf runs/demo hf_out/            (a run / checkpoints dir, streamed from ZeRO)
    nexa-convert to-hf model.safetensors hf_out/     (a state dict with nexa_config.json beside it)
    nexa-convert from-hf hf_out/ model.safetensors
"""
import argparse
import json
import sys
from pathlib import Path

import yaml

from megatron_nexa.cli.preprocess import parse_size
from megatron_nexa.config import ConfigError


def _run_context(ckpt_dir: Path, tag: str) -> tuple[str | None, dict | None, dict]:
    """The run config YAML, its last validation metrics and the dataset's preprocessing settings."""
    run_yaml = (ckpt_dir / tag / "config.yaml").read_text()
    run = yaml.safe_load(run_yaml)
    metrics, preprocessing = None, {}
    metrics_file = ckpt_dir.parent / "metrics.jsonl"
    if metrics_file.exists():
        evals = [json.loads(x) for x in metrics_file.read_text().splitlines() if "val_masked_mz" in x]
        metrics = {k: v for k, v in evals[-1].items() if k != "time"} if evals else None
    for source in run.get("data", {}).get("sources", []):
        manifest = Path(source["path"]) / "manifest.json"
        if manifest.exists():
            preprocessing = json.loads(manifest.read_text())["settings"]
            break
    return run_yaml, metrics, preprocessing


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nexa-convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    z = sub.add_parser("zero-to-torch", help="consolidate a DeepSpeed checkpoint into one fp32 state dict")
    z.add_argument("ckpt_dir")
    z.add_argument("out", help="OUT.safetensors (streamed) or OUT.pt")
    z.add_argument("--tag")
    h = sub.add_parser("to-hf", help="write a Hugging Face folder")
    h.add_argument("source", help="a run / checkpoints directory, or a .safetensors/.pt state dict")
    h.add_argument("out_dir")
    h.add_argument("--tag")
    h.add_argument("--max-shard-size", type=parse_size, default=5 * 10**9)
    f = sub.add_parser("from-hf", help="a Hugging Face folder back into a megatron_nexa state dict")
    f.add_argument("hf_dir")
    f.add_argument("out")
    args = p.parse_args(argv)
    try:
        if args.command == "zero-to-torch":
            from megatron_nexa.convert.zero_to_torch import zero_to_torch

            print(zero_to_torch(args.ckpt_dir, args.out, args.tag))
        elif args.command == "from-hf":
            from megatron_nexa.convert.from_hf import from_hf

            print(from_hf(args.hf_dir, args.out))
        else:
            print(_to_hf(args))
    except (FileNotFoundError, ValueError, ConfigError) as e:
        print(f"nexa-convert: error: {e}", file=sys.stderr)
        return 2
    return 0


def _to_hf(args) -> Path:
    from megatron_nexa.convert.to_hf import model_card, write_hf

    source = Path(args.source)
    if source.is_dir():
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        from megatron_nexa.config import model_config_from_dict
        from megatron_nexa.convert.zero_to_torch import ReloadingSource, resolve_tag

        ckpt_dir = source / "checkpoints" if (source / "checkpoints").is_dir() else source
        tag = resolve_tag(ckpt_dir, args.tag)
        run_yaml, metrics, preprocessing = _run_context(ckpt_dir, tag)
        cfg = model_config_from_dict(yaml.safe_load(run_yaml)["model"])
        reader = ReloadingSource(lambda: get_fp32_state_dict_from_zero_checkpoint(str(ckpt_dir), tag=tag, lazy_mode=True))
        state = {e.name: e for e in reader.entries()}
        card = model_card(cfg, run_yaml, metrics)
    else:
        from megatron_nexa.convert.from_hf import EXTRA
        from megatron_nexa.convert.state import load_state

        state, cfg = load_state(source)
        extra_file = source.parent / EXTRA
        extra = json.loads(extra_file.read_text()) if extra_file.exists() else {}
        preprocessing, card = extra.get("preprocessing", {}), extra.get("card") or model_card(cfg, None, None)
    return write_hf(state, cfg, args.out_dir, preprocessing, card, args.max_shard_size)


if __name__ == "__main__":
    sys.exit(main())
