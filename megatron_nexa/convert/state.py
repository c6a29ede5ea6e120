"""Reading and writing state dicts safely: safetensors, or ``torch.load(weights_only=True)``, with the
model config beside them; keys checked against the model with messages naming what is missing/extra."""
import json
from pathlib import Path

import torch

from megatron_nexa.config import ModelConfig, model_config_from_dict, to_plain
from megatron_nexa.model.layer_specs import canonical_state_dict
from megatron_nexa.model.pretraining import NexaSpecForPretraining
from megatron_nexa.model.reference import ReferenceEncoder

CONFIG_NAME = "nexa_config.json"


class CheckpointMismatch(ValueError):
    """A state dict does not fit the model: the message lists missing and unexpected keys."""


def expected_keys(cfg: ModelConfig) -> dict[str, tuple]:
    with torch.device("meta"):
        model = NexaSpecForPretraining(cfg, ReferenceEncoder(cfg))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_keys(state: dict, cfg: ModelConfig, source: str) -> None:
    expected = expected_keys(cfg)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if missing or unexpected or wrong:
        def show(keys):
            return ", ".join(keys[:8]) + (f" … ({len(keys)} in all)" if len(keys) > 8 else "")
        parts = [f"missing keys: {show(missing)}" if missing else "",
                 f"unexpected keys: {show(unexpected)}" if unexpected else "",
                 "wrong shapes: " + show([f"{k} {tuple(state[k].shape)} != {expected[k]}" for k in wrong]) if wrong else ""]
        raise CheckpointMismatch(f"{source} does not fit the model config: " + "; ".join(p for p in parts if p))


def save_state(state: dict, cfg: ModelConfig, out: str | Path) -> Path:
    """``.safetensors`` or ``.pt`` (tensors only), with ``nexa_config.json`` beside it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in state.items()}
    if out.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(out), metadata={"format": "pt"})
    elif out.suffix == ".pt":
        torch.save(state, out)
    else:
        raise ValueError(f"{out}: expected a .pt or .safetensors file name")
    write_config(cfg, out.parent)
    return out


def write_config(cfg: ModelConfig, directory: Path) -> None:
    (Path(directory) / CONFIG_NAME).write_text(json.dumps(to_plain(cfg), indent=1))


def load_state(path: str | Path) -> tuple[dict, ModelConfig]:
    path = Path(path)
    cfg_path = path.parent / CONFIG_NAME
    if not cfg_path.exists():
        raise FileNotFoundError(f"{cfg_path}: the model config must sit beside {path.name}")
    cfg = model_config_from_dict(json.loads(cfg_path.read_text()))
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle arbitrary objects
    except Exception as e:  # truncated or corrupt file: name it
        raise CheckpointMismatch(f"{path}: cannot be read ({type(e).__name__}: {e})") from None
    state = canonical_state_dict(state)
    check_keys(state, cfg, str(path))
    return state, cfg

