"""A DeepSpeed checkpoint (ZeRO-1/2/3) → one fp32 state dict, streamed one tensor at a time.

DeepSpeed's own consolidation reads the optimizer shards memory-mapped, in lazy mode; each parameter is
materialised, converted and written before the next. Pages of a memory map stay resident once read,
so the maps are dropped and reopened after every ``reload_bytes`` of output: peak memory is about
that budget plus the largest tensor, not a model copy.
"""
import contextlib
import gc
import io
from pathlib import Path

import torch
import yaml

from megatron_nexa.config import model_config_from_dict
from megatron_nexa.convert.from_hf import write_extra
from megatron_nexa.convert.run_context import read_run_context
from megatron_nexa.convert.safetensors_stream import Entry, write_safetensors
from megatron_nexa.convert.state import check_keys, save_state, write_config
from megatron_nexa.convert.to_hf import model_card
from megatron_nexa.model.layer_specs import canonical_state_dict


def locate_checkpoint(path: str | Path, tag: str | None) -> tuple[Path, str]:
    """``(checkpoints directory, tag)`` from a run directory, its ``checkpoints/``, or one checkpoint's own
    directory (``checkpoints/step_00000500``: that step). Without ``tag``, the run's newest (``latest``)."""
    ckpt_dir = Path(path)
    if not ckpt_dir.is_dir():
        raise FileNotFoundError(f"{path}: no such directory (a run, its checkpoints/ or one checkpoint's directory)")
    if (ckpt_dir / "checkpoints").is_dir():
        ckpt_dir = ckpt_dir / "checkpoints"
    elif (ckpt_dir / "config.yaml").is_file() and not (ckpt_dir / "latest").exists():  # one step's directory
        if tag and tag != ckpt_dir.name:
            raise ValueError(f"{path} is checkpoint {ckpt_dir.name}, but --tag asks for {tag}")
        return ckpt_dir.parent, ckpt_dir.name
    steps = sorted(p.name for p in ckpt_dir.glob("step_*"))
    if tag:
        if not (ckpt_dir / tag).is_dir():
            raise FileNotFoundError(f"{ckpt_dir}: no checkpoint {tag}; its checkpoints: {', '.join(steps) or 'none'}")
        return ckpt_dir, tag
    latest = ckpt_dir / "latest"
    if not latest.exists():
        raise FileNotFoundError(f"{ckpt_dir}: no 'latest' file; " + (
            f"pass --tag (one of {steps})" if steps else "not a run, its checkpoints/ or a checkpoint directory"))
    return ckpt_dir, latest.read_text().strip()


def zero_to_torch(ckpt_dir: str | Path, out: str | Path, tag: str | None = None, data: str | None = None) -> Path:
    """``ckpt_dir``: a run's ``checkpoints/`` directory, the run directory, or one checkpoint's. ``out``:
    ``.safetensors`` (streamed, one tensor in memory at a time) or ``.pt`` (torch.save needs the whole dict in
    memory). The run's preprocessing settings and model card go beside it (``hf_extra.json``) for ``to-hf``;
    ``data``: as there."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    ckpt_dir, tag = locate_checkpoint(ckpt_dir, tag)
    config_file = ckpt_dir / tag / "config.yaml"
    if not config_file.exists():
        raise FileNotFoundError(f"{config_file}: the run config is saved beside every checkpoint; it is missing")
    cfg = model_config_from_dict(yaml.safe_load(config_file.read_text())["model"])
    ctx = read_run_context(ckpt_dir, tag, data)  # before the long part: a bad --data fails at once
    source = ReloadingSource(lambda: get_fp32_state_dict_from_zero_checkpoint(str(ckpt_dir), tag=tag, lazy_mode=True))
    check_keys({k: _Shape(shape) for k, shape in source.shapes.items()}, cfg, str(ckpt_dir / tag))
    out = Path(out)
    if out.suffix == ".safetensors":
        write_safetensors(source.entries(), out)
        write_config(cfg, out.parent)
    else:
        save_state({k: source.tensor(k) for k in source.shapes}, cfg, out)
    write_extra(out.parent, ctx.preprocessing, ctx.preprocessing_missing, model_card(cfg, ctx.run_yaml, ctx.metrics))
    return out


class ReloadingSource:
    """Tensors of a lazy ZeRO state dict, re-opened every ``reload_bytes`` so read pages are released."""

    def __init__(self, open_lazy, reload_bytes: int = 256 * 2**20):
        self.open_lazy, self.reload_bytes = open_lazy, reload_bytes
        self.lazy, self.used = None, 0
        self._reopen()
        self.shapes = {k: tuple(v.shape) for k, v in self.lazy.items()}

    def _reopen(self):
        self.lazy = None
        gc.collect()  # the memory maps go with the last reference
        with contextlib.redirect_stdout(io.StringIO()):  # DeepSpeed prints its progress each time
            self.lazy = canonical_state_dict(self.open_lazy())
        self.used = 0

    def tensor(self, name: str) -> torch.Tensor:
        if self.used >= self.reload_bytes:
            self._reopen()
        t = _fp32(self.lazy[name])
        self.used += t.numel() * t.element_size()
        return t

    def entries(self) -> list[Entry]:
        return [Entry(k, shape, torch.float32, (lambda k=k: self.tensor(k))) for k, shape in self.shapes.items()]


def _fp32(lazy) -> torch.Tensor:
    t = lazy.contiguous() if not isinstance(lazy, torch.Tensor) else lazy
    return t.float() if t.is_floating_point() else t


class _Shape:
    def __init__(self, shape):
        self.shape = tuple(shape)
