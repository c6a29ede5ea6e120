"""A Hugging Face folder → a megatron_nexa state dict (to fine-tune or continue pretraining)."""
import dataclasses
import json
from pathlib import Path

from megatron_nexa.config import ModelConfig, model_config_from_dict
from megatron_nexa.convert.safetensors_stream import INDEX
from megatron_nexa.convert.state import check_keys, save_state

EXTRA = "hf_extra.json"  # what an export carries beyond the weights (preprocessing, model card), beside a state dict


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
    missing = None if config.get("preprocessing") else (config.get("preprocessing_missing")
                                                        or f"{hf_dir / 'config.json'} has no preprocessing settings")
    return state, cfg, {"preprocessing": config.get("preprocessing") or None, "preprocessing_missing": missing,
                        "card": card}


def from_hf(hf_dir: str | Path, out: str | Path) -> Path:
    state, cfg, extra = read_hf(hf_dir)
    path = save_state(state, cfg, out)
    write_extra(path.parent, **extra)
    return path


def write_extra(directory: Path, preprocessing: dict | None, preprocessing_missing: str | None, card: str | None):
    """Beside a state dict, so that ``to-hf`` from it exports the same settings and card."""
    (Path(directory) / EXTRA).write_text(json.dumps(
        {"preprocessing": preprocessing, "preprocessing_missing": preprocessing_missing, "card": card}))


def read_extra(state_path: Path) -> dict:
    """The extra beside ``state_path``; without one, the settings are recorded as missing, saying why."""
    path = Path(state_path).parent / EXTRA
    if path.exists():
        return json.loads(path.read_text())
    return {"preprocessing": None, "card": None,
            "preprocessing_missing": f"no {EXTRA} beside {state_path}, so no preprocessing settings; pass --data "
                                     "DATASET_DIR"}
