"""What an export carries beside the weights: the run config, the validation metrics at the exported checkpoint and
the preprocessing settings of the training data (from its dataset manifest), which ``embed`` needs to treat spectra
as in training.

A run's data paths are kept as given at launch, often relative to the directory it was launched from. That
directory is the run directory with the configured (relative) ``train.run_dir`` taken off its end; failing
that, the run directory and its parents are tried, then the current directory. Settings that cannot be
found are recorded as missing, with the paths tried, never written as empty settings.
"""
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

MANIFEST = "manifest.json"


@dataclass
class RunContext:
    run_yaml: str
    metrics: dict | None
    preprocessing: dict | None
    preprocessing_missing: str | None = None  # why ``preprocessing`` is None, naming the paths tried


def dataset_settings(path: str | Path) -> dict:
    """The preprocessing settings of a dataset version folder (or of its manifest.json)."""
    path = Path(path)
    manifest = path if path.name == MANIFEST else path / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{path}: no {MANIFEST} (expected a dataset version folder made by nexa-preprocess)")
    try:
        return json.loads(manifest.read_text())["settings"]
    except (ValueError, KeyError) as e:
        raise ValueError(f"{manifest}: no readable preprocessing settings ({type(e).__name__}: {e})") from None


def run_dir_of(ckpt_dir: Path) -> Path:
    return ckpt_dir.parent if ckpt_dir.name == "checkpoints" else ckpt_dir


def read_run_context(ckpt_dir: str | Path, tag: str, data: str | Path | None = None) -> RunContext:
    """``data``: a dataset version folder whose settings replace the search (the user knows best)."""
    ckpt_dir = Path(ckpt_dir)
    run_yaml = (ckpt_dir / tag / "config.yaml").read_text()
    run = yaml.safe_load(run_yaml) or {}
    metrics = checkpoint_metrics(run_dir_of(ckpt_dir) / "metrics.jsonl", tag)
    if data is not None:
        return RunContext(run_yaml, metrics, dataset_settings(data))
    sources = [s.get("path", "") for s in (run.get("data") or {}).get("sources") or []]
    if not sources:
        return RunContext(run_yaml, metrics, None, "the run config names no data.sources; pass --data DATASET_DIR")
    roots = candidate_roots(run_dir_of(ckpt_dir), (run.get("train") or {}).get("run_dir"))
    tried = []
    for source in sources:
        for manifest in manifest_candidates(source, roots):
            tried.append(str(manifest))
            if manifest.is_file():
                return RunContext(run_yaml, metrics, dataset_settings(manifest))
    return RunContext(run_yaml, metrics, None,
                      f"the training data's {MANIFEST} was not found (data.sources: {', '.join(sources)}; tried "
                      f"{', '.join(dict.fromkeys(tried))}); pass --data DATASET_DIR")


def checkpoint_metrics(metrics_file: Path, tag: str) -> dict | None:
    """The run's validation metrics at checkpoint ``tag`` (``step_N``): its last evaluation at step N or before,
    so that an export of an earlier checkpoint does not carry a later step's numbers."""
    if not metrics_file.exists():
        return None
    evals = [json.loads(x) for x in metrics_file.read_text().splitlines() if "val_masked_mz" in x]
    match = re.fullmatch(r"step_0*(\d+)", tag)
    if match:
        evals = [e for e in evals if e.get("step", 0) <= int(match.group(1))]
    return {k: v for k, v in evals[-1].items() if k != "time"} if evals else None


def candidate_roots(run_dir: Path, configured_run_dir: str | None) -> list[Path]:
    """Directories a relative data path may be relative to, most likely first."""
    here = Path(os.path.abspath(run_dir))
    roots = []
    if configured_run_dir and not Path(configured_run_dir).is_absolute():
        parts = Path(os.path.normpath(configured_run_dir)).parts
        for actual in (here, here.resolve()):
            if ".." not in parts and actual.parts[-len(parts):] == parts:
                roots.append(Path(*actual.parts[:-len(parts)]))  # the launch directory
    roots += [here, *here.parents, Path.cwd()]
    return list(dict.fromkeys(roots))


def manifest_candidates(source: str, roots: list[Path]) -> list[Path]:
    if "://" in source:  # a remote dataset: not searched here
        return []
    path = Path(source).expanduser()
    if path.is_absolute():
        return [path / MANIFEST]
    return [root / path / MANIFEST for root in roots]
