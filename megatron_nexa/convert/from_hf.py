"""A Hugging Face folder → a megatron_nexa state dict (to fine-tune or continue pretraining)."""
import dataclasses
import json
from pathlib import Path

from megatron_nexa.config import ModelConfig, model_config_from_dict
from megatron_nexa.convert.safetensors_stream import INDEX
from megatron_nexa.convert.state import check_keys, save_state

EXTRA = "hf_extra.json"  # what the HF folder carried beyond the weights (preprocessing, model card)


def read_hf(hf_dir: str | Path) -> tuple[dict, ModelConfig, dict]:
    from safetensors.torch import load_file

    hf_dir = Path(hf_dir)
    config = json.loads((hf_dir / "config.json").read_text())
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    cfg = model_config_from_dict({k: v for k, v in config.items() if k in known})
    if (hf_dir / INDEX).exists():
        files = sorted(set(json.loads((hf_dir / INDEX).read_text())["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    state = {}
    for name in files:
        try:
            state.update(load_file(str(hf_dir / name)))
        except Exception as e:
            raise ValueError(f"{hf_dir / name}: cannot be read ({type(e).__name__}: {e})") from None
    check_keys(state, cfg, str(hf_dir))
    card = (hf_dir / "README.md").read_text() if (hf_dir / "README.md").exists() else None
    return state, cfg, {"preprocessing": config.get("preprocessing", {}), "card": card}


def from_hf(hf_dir: str | Path, out: str | Path) -> Path:
    state, cfg, extra = read_hf(hf_dir)
    path = save_state(state, cfg, out)
    (path.parent / EXTRA).write_text(json.dumps(extra))
    return path
