"""A DeepSpeed checkpoint (ZeRO-1/2/3) → one fp32 state dict, streamed one tensor at a time.

DeepSpeed's own consolidation reads the optimizer shards (memory-mapped) in lazy mode; each parameter
is materialised, converted and written before the next, so peak memory stays near one model copy.
"""
from pathlib import Path

import yaml

from megatron_nexa.config import model_config_from_dict
from megatron_nexa.convert.state import check_keys, save_state
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
    """``ckpt_dir``: a run's ``checkpoints/`` directory (or the run directory itself)."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    ckpt_dir = Path(ckpt_dir)
    if (ckpt_dir / "checkpoints").is_dir():
        ckpt_dir = ckpt_dir / "checkpoints"
    tag = resolve_tag(ckpt_dir, tag)
    config_file = ckpt_dir / tag / "config.yaml"
    if not config_file.exists():
        raise FileNotFoundError(f"{config_file}: the run config is saved beside every checkpoint; it is missing")
    cfg = model_config_from_dict(yaml.safe_load(config_file.read_text())["model"])
    lazy = get_fp32_state_dict_from_zero_checkpoint(str(ckpt_dir), tag=tag, lazy_mode=True)
    state = canonical_state_dict({k: _Materialise(v) for k, v in lazy.items()})
    check_keys({k: _Shape(v) for k, v in state.items()}, cfg, f"{ckpt_dir / tag}")
    return save_state(_StreamingDict(state), cfg, out)


class _Shape:
    def __init__(self, lazy):
        self.shape = tuple(lazy.shape)


class _Materialise:
    """Wraps DeepSpeed's lazy tensor: shape without data, data on demand."""

    def __init__(self, lazy):
        self.lazy, self.shape = lazy, tuple(lazy.shape)

    def tensor(self):
        t = self.lazy.contiguous() if hasattr(self.lazy, "contiguous") else self.lazy
        return t.float() if t.is_floating_point() else t


class _StreamingDict(dict):
    """A dict whose values turn into tensors when read, and are dropped by the writer as it goes."""

    def __init__(self, lazy: dict):
        super().__init__(lazy)

    def items(self):
        for k in list(self.keys()):
            yield k, self[k]

    def __getitem__(self, key):
        value = super().__getitem__(key)
        return value.tensor() if isinstance(value, _Materialise) else value
