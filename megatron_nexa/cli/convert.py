"""``nexa-convert``: ZeRO checkpoint → fp32 PyTorch → Hugging Face, and back.

    nexa-convert zero-to-torch runs/demo model.safetensors [--tag step_00001000]
    nexa-convert to-hf runs/demo hf_out/            (a run / checkpoints dir, streamed from ZeRO)
    nexa-convert to-hf model.safetensors hf_out/     (a state dict with nexa_config.json beside it)
    nexa-convert from-hf hf_out/ model.safetensors

The export records the training data's preprocessing settings (its dataset manifest), which embed() applies. A
run's relative data path is looked up from the directory the run was launched from, the run directory and its
parents, and the current directory; if none holds it, a warning says so and the export records them as missing.
--data DATASET_DIR names the dataset version instead.
"""
import argparse
import sys
from pathlib import Path

import yaml

from megatron_nexa.cli.preprocess import parse_size
from megatron_nexa.config import ConfigError

DATA_HELP = ("the training dataset version folder, whose manifest gives the preprocessing settings (default: the "
             "run config's data.sources, looked up from the run)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nexa-convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    z = sub.add_parser("zero-to-torch", help="consolidate a DeepSpeed checkpoint into one fp32 state dict")
    z.add_argument("ckpt_dir", help="a run, its checkpoints/ or one checkpoint's directory")
    z.add_argument("out", help="OUT.safetensors (streamed) or OUT.pt")
    z.add_argument("--tag")
    z.add_argument("--data", help=DATA_HELP)
    h = sub.add_parser("to-hf", help="write a Hugging Face folder")
    h.add_argument("source", help="a run, its checkpoints/ or one checkpoint's directory, or a .safetensors/.pt "
                                  "state dict")
    h.add_argument("out_dir")
    h.add_argument("--tag")
    h.add_argument("--max-shard-size", type=parse_size, default=5 * 10**9)
    h.add_argument("--data", help=DATA_HELP)
    f = sub.add_parser("from-hf", help="a Hugging Face folder back into a megatron_nexa state dict")
    f.add_argument("hf_dir")
    f.add_argument("out")
    args = p.parse_args(argv)
    try:
        if args.command == "zero-to-torch":
            from megatron_nexa.convert.from_hf import read_extra
            from megatron_nexa.convert.zero_to_torch import zero_to_torch

            out = zero_to_torch(args.ckpt_dir, args.out, args.tag, args.data)
            _warn_missing(read_extra(out).get("preprocessing_missing"))
            print(out)
        elif args.command == "from-hf":
            from megatron_nexa.convert.from_hf import from_hf

            print(from_hf(args.hf_dir, args.out))
        else:
            print(_to_hf(args))
    except (FileNotFoundError, ValueError, ConfigError) as e:
        print(f"nexa-convert: error: {e}", file=sys.stderr)
        return 2
    return 0


def _warn_missing(why: str | None) -> None:
    if why:
        print(f"nexa-convert: warning: no preprocessing settings recorded: {why}. embed() will warn and use the "
              "defaults for this model", file=sys.stderr)


def _to_hf(args) -> Path:
    from megatron_nexa.convert.to_hf import model_card, write_hf

    source = Path(args.source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or directory (a run, its checkpoints/ or one checkpoint's "
                                "directory, or a .safetensors/.pt state dict)")
    if source.is_dir():
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        from megatron_nexa.config import model_config_from_dict
        from megatron_nexa.convert.run_context import read_run_context
        from megatron_nexa.convert.zero_to_torch import ReloadingSource, locate_checkpoint

        ckpt_dir, tag = locate_checkpoint(source, args.tag)
        ctx = read_run_context(ckpt_dir, tag, args.data)
        preprocessing, missing = ctx.preprocessing, ctx.preprocessing_missing
        cfg = model_config_from_dict(yaml.safe_load(ctx.run_yaml)["model"])
        reader = ReloadingSource(lambda: get_fp32_state_dict_from_zero_checkpoint(str(ckpt_dir), tag=tag, lazy_mode=True))
        state = {e.name: e for e in reader.entries()}
        card = model_card(cfg, ctx.run_yaml, ctx.metrics)
    else:
        from megatron_nexa.convert.from_hf import EXTRA, read_extra
        from megatron_nexa.convert.run_context import dataset_settings
        from megatron_nexa.convert.state import load_state

        state, cfg = load_state(source)
        extra = read_extra(source)
        preprocessing, card = extra.get("preprocessing") or None, extra.get("card") or model_card(cfg, None, None)
        missing = None if preprocessing else (extra.get("preprocessing_missing")
                                              or f"{source.parent / EXTRA} has no preprocessing settings")
        if args.data:
            preprocessing, missing = dataset_settings(args.data), None
    _warn_missing(missing)
    return write_hf(state, cfg, args.out_dir, preprocessing, card, args.max_shard_size, missing)


if __name__ == "__main__":
    sys.exit(main())
