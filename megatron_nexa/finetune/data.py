"""Fine-tuning data: one split's spectra with the task's target, tokenised per batch like pretraining.

Rows without a usable target (no SMILES, RT in an LC system unseen in training, …) are dropped and
counted (``dropped``), never silently lost. The data (the ``max_train`` subset, generated CCS) is drawn with
a fixed seed, not the run's: runs with different seeds differ in weights and batch order and score the same
test rows, so ``finetune.report`` can pair them.
"""
from dataclasses import dataclass, field

import numpy as np
import torch

from megatron_nexa.finetune.config import FinetuneConfig, Task
from megatron_nexa.data.source import SpectraSource
from megatron_nexa.data.tokenize import single_row, stack_rows
from megatron_nexa.downstream.features import spectra, subset
from megatron_nexa.downstream.targets import RTScaler, morgan_fingerprints, synthetic_ccs

DATA_SEED = 0


@dataclass
class TaskSplit:
    items: list  # (mz, intensity, precursor_mz) per spectrum
    target: np.ndarray  # bits [n, n_bits] | standardised value [n] | structure key [n]
    group: np.ndarray  # int64 [n]: LC system code for RT, else zeros
    raw: np.ndarray | None = None  # RT / CCS in its own unit (for MAE)
    groups_raw: np.ndarray | None = None
    dropped: int = 0
    keys: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))


def load_split(cfg: FinetuneConfig, split: str, scaler: RTScaler | None = None) -> tuple[TaskSplit, RTScaler | None]:
    """The split's rows that have a target; for RT/CCS the scaler is fitted here on the training split."""
    src = SpectraSource(cfg.data, split)
    idx = subset(len(src), cfg.max_train if split == "train" else None, DATA_SEED)
    col = {c: src.view.column(c)[idx] for c in ("smiles", "rt", "run_id", "inchikey")}
    keys = np.array([(k or "").split("-")[0] for k in col["inchikey"]], dtype=object)
    if cfg.task == Task.FINGERPRINT:
        bits, ok = morgan_fingerprints(list(col["smiles"]), cfg.n_bits)
        target, groups, raw = bits, np.zeros(len(idx), dtype=object), None
    elif cfg.task == Task.CONTRASTIVE:
        ok = keys != ""
        target, groups, raw = keys, np.zeros(len(idx), dtype=object), None
    else:
        if cfg.task == Task.RT:
            raw, groups = col["rt"].astype(np.float64), col["run_id"]
        elif src.view.has_column("ccs"):
            raw, groups = src.view.column("ccs")[idx].astype(np.float64), np.zeros(len(idx), dtype=object)
        else:
            raw, groups = synthetic_ccs(list(col["smiles"]), DATA_SEED), np.zeros(len(idx), dtype=object)
        if scaler is None:
            scaler = RTScaler(groups, raw)
        ok = scaler.known(groups, raw)
        target = np.zeros(len(idx), np.float32)
        target[ok] = scaler.transform(groups[ok], raw[ok])
    keep = np.flatnonzero(ok)
    group = np.zeros(len(keep), np.int64)
    if cfg.task in (Task.RT, Task.CCS):
        group = scaler.codes(groups[keep])
    return TaskSplit(spectra(src, idx[keep]), target[keep], group, None if raw is None else raw[keep],
                     groups[keep], int(len(idx) - len(keep)), keys[keep]), scaler


def batch_tensors(items: list, max_peaks: int) -> tuple[torch.Tensor, ...]:
    return stack_rows([single_row(mz, inten, prec, max_peaks) for mz, inten, prec in items])


def contrastive_batches(keys: np.ndarray, pairs: int, rng: np.random.Generator):
    """Endless (a, b) index arrays: ``pairs`` distinct structures, two different spectra of each."""
    by_key: dict = {}
    for i, k in enumerate(keys):
        by_key.setdefault(k, []).append(i)
    multi = [np.array(v) for v in by_key.values() if len(v) >= 2]
    if len(multi) < pairs:
        raise ValueError(f"contrastive fine-tuning needs {pairs} structures with >= 2 spectra in the training "
                         f"split; it has {len(multi)}: lower micro_batch_size")
    while True:
        chosen = rng.choice(len(multi), pairs, replace=False)
        ab = np.array([rng.choice(multi[c], 2, replace=False) for c in chosen])
        yield ab[:, 0], ab[:, 1]
