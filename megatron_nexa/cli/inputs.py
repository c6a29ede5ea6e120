"""A command's input paths checked before anything heavy is imported or loaded (torch, DeepSpeed, transformers, the
data): a missing or wrong path is an ``InputError`` naming it and what is wrong, which the command prints with
``errors.user_error`` (one line, exit 2), not a traceback seconds or minutes later. Only the standard library and
the dataset manifest reader are imported here."""
import argparse
import json
from pathlib import Path

from megatron_nexa.data.manifest import Manifest, MissingSplit, load_with_splits

HF_CODE = ("configuration_nexa.py", "modeling_nexa.py")  # what AutoModel(trust_remote_code=True) runs
HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
EXPORT = "a Hugging Face folder written by nexa-convert to-hf"


class InputError(ValueError):
    """An input path is missing or is not what the command takes."""


def hf_export(path: str, name: str, code: bool = True) -> Path:
    """``path`` is a Nexa-Spec Hugging Face export: a folder with ``config.json`` (``model_type`` nexa_spec), the
    weights and, with ``code``, the modelling code that ``AutoModel`` runs. ``name``: the option or field."""
    folder = Path(path)
    if not folder.exists():
        raise InputError(f"{name} {path}: no such folder (expected {EXPORT})")
    if not folder.is_dir():
        raise InputError(f"{name} {path}: not a folder (expected {EXPORT})")
    config = folder / "config.json"
    if not config.is_file():
        raise InputError(f"{name} {path}: not a Hugging Face export (no config.json; expected {EXPORT})")
    try:
        data = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{name} {config}: unreadable or not JSON ({e})") from None
    model_type = data.get("model_type") if isinstance(data, dict) else None
    if model_type != "nexa_spec":
        raise InputError(f"{name} {path}: config.json has model_type {model_type!r}, not 'nexa_spec' "
                         f"(expected {EXPORT})")
    if not any((folder / w).is_file() for w in HF_WEIGHTS):
        raise InputError(f"{name} {path}: no weights ({' or '.join(HF_WEIGHTS)}); expected {EXPORT}")
    missing = [f for f in HF_CODE if code and not (folder / f).is_file()]
    if missing:
        raise InputError(f"{name} {path}: no {' or '.join(missing)} (expected {EXPORT})")
    return folder


def dataset_version(path: str, name: str, splits: tuple[str, ...]) -> Manifest:
    """``path`` is a local dataset version (nexa-preprocess output) with ``splits``; returns its manifest."""
    folder = Path(path)
    if not folder.exists():
        raise InputError(f"{name} {path}: no such folder (expected a dataset version written by nexa-preprocess)")
    if not folder.is_dir():
        raise InputError(f"{name} {path}: not a folder (expected a dataset version written by nexa-preprocess)")
    try:
        return load_with_splits(path, splits)
    except MissingSplit as e:
        raise InputError(f"{name} {e}") from None
    except (OSError, ValueError) as e:  # no manifest.json, or a damaged one; the message names the path
        raise InputError(f"{name}: {e}") from None


def output_file(path: str, name: str) -> Path:
    """A file the command writes at its end: its folder must exist and the path must not be a folder."""
    out = Path(path)
    if out.is_dir():
        raise InputError(f"{name} {path}: is a folder (expected a file name)")
    if not out.parent.is_dir():
        raise InputError(f"{name} {path}: no such folder {out.parent} to write into")
    return out


def output_dir(path: str, name: str) -> Path:
    """A folder the command creates (with its parents) or writes into: nothing on the way may be a file."""
    out = Path(path)
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                raise InputError(f"{name} {path}: {p} is a file, not a folder")
            break
    return out


def lab_names(text: str) -> list[str]:
    """``--holdout-labs`` / ``--exclude-labs``: comma-separated lab names (see ``data/labs.py``)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one lab")
    for name in names:
        if ":" in name:
            raise argparse.ArgumentTypeError(f"{name}: a lab is the part of a run id before ':' (MassBank's "
                                             f"contributor): name {name.split(':')[0]}")
    return names


def at_least(low: float, kind=int, strict: bool = False):
    """An argparse type: a number of ``kind`` that is at least (``strict``: above) ``low``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low}, got {text}")
        return value
    return parse


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1)."""
    value = at_least(0.0, float)(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be < 1, got {text}")
    return value
