"""A DeepSpeed checkpoint (ZeRO-1/2/3) → one fp32 state dict, streamed one tensor at a time.

DeepSpeed's own consolidation reads the optimizer shards (memory-mapped) in lazy mode; each parameter
is materialised, converted and written before the next, so peak memory stays near one model copy.
"""
from pathlib import Path

import torch
import yaml

from megatron_nexa.config import model_config_from_dict
from megatron_nexa.convert.safetensors_stream import Entry, write_safetensors
from megatron_nexa.convert.state import check_keys, save_state, write_config
from megatron_nexa.model.layer_specs import canonical_state_dict


def resolve_tag(ckpt_dir: Path, tag: str | None) -> str:
    if tag:
        return tag
    latest = ckpt_dir / "latest"
    if not latest.exists():
        raise FileNotFoundError(f"{ckpt_dir}: no 'latest' file; pass --tag (one of "
                                f"{sorted(p.name for p in ckpt_dir.glob('step_*'))})")
    return latest.read_text().strip()


def zero_to_torch(ckpt_dir: str | Path, out: str | Path, tag: str | None = None) -> Path:
    """``ckpt_dir``: a run's ``checkpoints/`` directory (or the run directory itself). ``out``: ``.safetensors``
    (streamed, one tensor in memory at a time) or ``.pt`` (torch.save needs the whole dict in memory)."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    ckpt_dir = Path(ckpt_dir)
    if (ckpt_dir / "checkpoints").is_dir():
        ckpt_dir = ckpt_dir / "checkpoints"
    tag = resolve_tag(ckpt_dir, tag)
    config_file = ckpt_dir / tag / "config.yaml"
    if not config_file.exists():
        raise FileNotFoundError(f"{config_file}: the run config is saved beside every checkpoint; it is missing")
    cfg = model_config_from_dict(yaml.safe_load(config_file.read_text())["model"])
    lazy = canonical_state_dict(get_fp32_state_dict_from_zero_checkpoint(str(ckpt_dir), tag=tag, lazy_mode=True))
    check_keys({k: _Shape(v.shape) for k, v in lazy.items()}, cfg, str(ckpt_dir / tag))
    out = Path(out)
    if out.suffix == ".safetensors":
        entries = [Entry(k, tuple(v.shape), torch.float32, (lambda v=v: _fp32(v))) for k, v in lazy.items()]
        write_safetensors(entries, out)
        write_config(cfg, out.parent)
        return out
    return save_state({k: _fp32(v) for k, v in lazy.items()}, cfg, out)


def _fp32(lazy) -> torch.Tensor:
    t = lazy.contiguous() if not isinstance(lazy, torch.Tensor) else lazy
    return t.float() if t.is_floating_point() else t


class _Shape:
    def __init__(self, shape):
        self.shape = tuple(shape)
