"""``embed()``: spectra in, one embedding per input record out (``[CLS]``, or the mean of the peak tokens), with
the training preprocessing.

Accepts MGF/mzML/GeMS paths, ``(mz, intensity, precursor_mz)`` tuples, or matchms ``Spectrum`` objects, and a
model: a Hugging Face folder written by ``nexa-convert to-hf``, a model loaded from one, or megatron_nexa's own
model or encoder. Peaks go through the same filters as preprocessing (settings from the model's config or
``preprocessing=``; ``min_peaks`` is not applied, so every spectrum with at least one valid peak is embedded)
and the same tokenisation as training. Row i is input record i, always: a record that cannot be embedded
(unreadable, no precursor, no valid peak) gets a row of NaN. Warnings name those rows, spectra cut to the
model's peak count, and spectra with m/z beyond the model's range; ``embed_records`` returns the same per row.
"""
import dataclasses
import enum
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from megatron_nexa.config import ModelConfig
from megatron_nexa.data.filters import PreprocessSettings, filter_chunk
from megatron_nexa.data.spectrum import SpectraChunk, pad_peak_lists
from megatron_nexa.data.tokenize import single_row, stack_rows
from megatron_nexa.inference_inputs import Item, check_paths, items
from megatron_nexa.tokens import TokenType

BLOCK = 4096  # input records filtered together


class Pooling(str, enum.Enum):
    """What one spectrum's vector is: the ``[CLS]`` token (trained by retention order and InfoNCE), or the
    mean of its peak tokens (trained by masked-peak prediction)."""

    CLS = "cls"
    MEAN = "mean"


class Record(NamedTuple):
    """What row i of the output is: where the record came from, whether it was embedded, and why not or what
    was changed (peaks cut to the model's count, m/z beyond its range)."""

    source: str
    index: int
    record: str
    embedded: bool
    note: str


def load_model(model, device: str | None = "cpu"):
    """A Hugging Face folder (loaded on ``device``), or a model (moved to ``device`` unless it is None); eval mode."""
    if isinstance(model, (str, Path)):
        folder = Path(model)
        if folder.is_dir() and not (folder / "config.json").is_file():
            raise ValueError(f"{model}: not a Hugging Face folder (no config.json); pass a folder written by "
                             "nexa-convert to-hf")
        from transformers import AutoModel

        model = AutoModel.from_pretrained(str(model), trust_remote_code=True)
        device = device or "cpu"
    return (model.to(device) if device else model).eval()


@dataclasses.dataclass
class _Model:
    encoder: torch.nn.Module
    cfg: object  # ModelConfig or the HF config: hidden_size, max_peaks, mz_min, mz_max
    preprocessing: dict | None
    missing: str | None  # why there are no preprocessing settings


def _resolve(model) -> _Model:
    """The encoder to call and its config: an HF model, or megatron_nexa's (``.cfg``; a DeepSpeed engine unwrapped)."""
    while isinstance(getattr(model, "module", None), torch.nn.Module) and not hasattr(model, "cfg"):
        model = model.module
    config = getattr(model, "config", None)
    if hasattr(config, "hidden_size") and hasattr(config, "max_peaks"):
        saved = dict(getattr(config, "preprocessing", None) or {}) or None
        missing = None if saved else (getattr(config, "preprocessing_missing", None)
                                      or "the model's config has no preprocessing settings")
        return _Model(getattr(model, "encoder", model), config, saved, missing)
    if isinstance(getattr(model, "cfg", None), ModelConfig):
        return _Model(getattr(model, "encoder", model), model.cfg, None,
                      "a megatron_nexa model carries no preprocessing settings")
    raise TypeError(f"model: got a {type(model).__name__}; pass a folder written by nexa-convert to-hf, a model "
                    "loaded from one, or megatron_nexa's NexaSpecForPretraining or encoder")


def _settings(m: _Model, given) -> PreprocessSettings:
    """``given``: PreprocessSettings, their dict, or a dataset version folder; else the model's; else the defaults."""
    if isinstance(given, PreprocessSettings):
        return dataclasses.replace(given, min_peaks=1)
    if isinstance(given, (str, Path)):
        from megatron_nexa.data.manifest import Manifest

        given = Manifest.load(str(given)).settings
    saved = dict(given) if given is not None else m.preprocessing
    if saved is None:
        _warn(f"{m.missing}: embedding with the default preprocessing settings; pass preprocessing= (the training "
              "dataset's folder or its settings) to treat spectra as in training")
        saved = {}
    known = {f.name for f in dataclasses.fields(PreprocessSettings)}
    saved = {k: v for k, v in saved.items() if k in known}
    if "split_fractions" in saved:
        saved["split_fractions"] = tuple(saved["split_fractions"])
    return dataclasses.replace(PreprocessSettings(**saved), min_peaks=1)


def embed(spectra, model, batch_size: int = 64, device: str | None = None, per_peak: bool = False,
          progress: bool = False, pooling: Pooling | str = Pooling.CLS, preprocessing=None):
    """``[n, hidden]`` float32 array, row i for input record i, pooled as ``pooling`` says (and, with ``per_peak``,
    a list of ``[n_peaks_i, hidden]`` arrays of the peak tokens in m/z order, None for NaN rows). ``device``:
    None keeps a given model where it is (a folder is loaded on the CPU)."""
    pooling = Pooling(pooling)
    out = _embed(spectra, model, (pooling,), batch_size, device, per_peak, progress, preprocessing)
    return (out.pooled[pooling], out.peaks) if per_peak else out.pooled[pooling]


def embed_pooled(spectra, model, poolings=tuple(Pooling), batch_size: int = 64, device: str | None = None,
                 per_peak: bool = False, progress: bool = False, preprocessing=None) -> tuple[dict, list]:
    """Every pooling in ``poolings`` from one encoder pass: ``({pooling: [n, hidden] array}, peak rows)``;
    the peak rows are ``[n_peaks_i, hidden]`` arrays with ``per_peak``, else ``None``s."""
    out = _embed(spectra, model, poolings, batch_size, device, per_peak, progress, preprocessing)
    return out.pooled, out.peaks


def embed_records(spectra, model, pooling: Pooling | str = Pooling.CLS, batch_size: int = 64,
                  device: str | None = None, progress: bool = False, preprocessing=None) -> tuple[np.ndarray, list]:
    """``(embeddings, records)``: the array of ``embed`` and one ``Record`` per row saying which input it is."""
    pooling = Pooling(pooling)
    out = _embed(spectra, model, (pooling,), batch_size, device, False, progress, preprocessing)
    return out.pooled[pooling], out.records


def _warn(message: str) -> None:
    """A UserWarning pointing at the first caller outside this package."""
    package, frame, level = str(Path(__file__).parent), sys._getframe(0), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, stacklevel=level)


def _listed(rows: list[str]) -> str:
    return "; ".join(rows[:5]) + (f"; … ({len(rows)} in all)" if len(rows) > 5 else "")


@dataclasses.dataclass
class _Out:
    pooled: dict
    peaks: list
    records: list
    unembedded: list = dataclasses.field(default_factory=list)  # "row i (label): why"
    truncated: list = dataclasses.field(default_factory=list)
    out_of_range: list = dataclasses.field(default_factory=list)
    file_problems: list = dataclasses.field(default_factory=list)


def _embed(spectra, model, poolings, batch_size, device, per_peak, progress, preprocessing) -> _Out:
    poolings = [Pooling(p) for p in poolings]
    check_paths(spectra)
    given, was_training = model, isinstance(model, torch.nn.Module) and model.training
    model = load_model(model, device)
    try:
        m = _resolve(model)
        settings = _settings(m, preprocessing)
        out = _Out({p: [] for p in poolings}, [], [])
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(unit="spectra", desc="embed")
        block = []
        for item in items(spectra):
            if item.index is None:
                out.file_problems.append(f"{item.source}: {item.reason}")
                continue
            block.append(item)
            if len(block) == BLOCK:
                _embed_block(block, m, settings, poolings, batch_size, per_peak, out)
                if bar is not None:
                    bar.update(len(block))
                block = []
        _embed_block(block, m, settings, poolings, batch_size, per_peak, out)
        if bar is not None:
            bar.update(len(block))
            bar.close()
    finally:
        if was_training:
            given.train()
    _report(out, m, settings)
    out.pooled = {p: np.concatenate(v) if v else np.zeros((0, m.cfg.hidden_size), np.float32)
                  for p, v in out.pooled.items()}
    return out


def _report(out: _Out, m: _Model, settings: PreprocessSettings) -> None:
    if out.unembedded:
        _warn(f"{len(out.unembedded)} spectra could not be embedded (NaN rows): {_listed(out.unembedded)}")
    if out.truncated:
        limit = min(settings.top_k, m.cfg.max_peaks)
        by = "the model takes" if limit == m.cfg.max_peaks else "the preprocessing keeps (top_k)"
        _warn(f"{len(out.truncated)} spectra have more valid peaks than {by} ({limit}): the {limit} most intense "
              f"were embedded: {_listed(out.truncated)}")
    if out.out_of_range:
        _warn(f"{len(out.out_of_range)} spectra have m/z or precursor m/z outside the model's range "
              f"[{m.cfg.mz_min:g}, {m.cfg.mz_max:g}) (embedded as they are; the model was not trained on such "
              f"values): {_listed(out.out_of_range)}")
    if out.file_problems:
        _warn(f"{len(out.file_problems)} input files gave no rows: {_listed(out.file_problems)}")


@torch.no_grad()
def _embed_block(block: list[Item], m: _Model, settings, poolings, batch_size, per_peak, out: _Out) -> None:
    first = len(out.records)
    hidden_size = m.cfg.hidden_size
    pooled = {p: np.full((len(block), hidden_size), np.nan, np.float32) for p in poolings}
    peaks, notes, embedded = [None] * len(block), [item.reason for item in block], np.zeros(len(block), bool)
    todo = [j for j, item in enumerate(block) if item.peaks is not None]
    if todo:
        mz, inten, count = pad_peak_lists([block[j].peaks[0] for j in todo], [block[j].peaks[1] for j in todo])
        chunk = SpectraChunk(mz, inten, count, np.array([block[j].peaks[2] for j in todo], np.float64))
        filtered = filter_chunk(chunk, settings)
        for r, why in zip(filtered.rejected, filtered.reasons):
            notes[todo[r]] = why
        dest = [todo[r] for r in np.setdiff1d(np.arange(len(todo)), filtered.rejected)]
        limit = min(settings.top_k, m.cfg.max_peaks)
        n_valid = filtered.chunk.count if mz.shape[1] <= settings.top_k else \
            filter_chunk(chunk, dataclasses.replace(settings, top_k=mz.shape[1])).chunk.count
        k = filtered.chunk
        for start in range(0, len(k), batch_size):
            idx = range(start, min(start + batch_size, len(k)))
            rows = [single_row(k.mz[i, :k.count[i]], k.intensity[i, :k.count[i]], float(k.precursor_mz[i]),
                               m.cfg.max_peaks) for i in idx]
            _remarks(rows, [dest[i] for i in idx], n_valid[start:start + len(rows)], limit, m.cfg, notes, out, block,
                     first)
            hidden = _forward(m, rows)
            is_peak = torch.from_numpy(np.stack([r.token_type == TokenType.PEAK for r in rows]))
            is_peak = is_peak.to(hidden.device).unsqueeze(-1).to(hidden.dtype)
            where = [dest[i] for i in idx]
            embedded[where] = True
            for p in poolings:
                vec = hidden[:, 0] if p == Pooling.CLS else (hidden * is_peak).sum(1) / is_peak.sum(1)
                pooled[p][where] = vec.float().cpu().numpy()
            if per_peak:
                for j, row in enumerate(rows):
                    n = int((row.token_type == TokenType.PEAK).sum())
                    peaks[where[j]] = hidden[j, 2:2 + n].float().cpu().numpy()
    for j, item in enumerate(block):
        out.records.append(Record(item.source, item.index, item.record, bool(embedded[j]), notes[j]))
        if not embedded[j]:
            out.unembedded.append(f"row {first + j} ({item.label}): {notes[j]}")
    for p in poolings:
        out.pooled[p].append(pooled[p])
    out.peaks += peaks


def _forward(m: _Model, rows) -> torch.Tensor:
    device = next(m.encoder.parameters()).device
    result = m.encoder(*[t.to(device) for t in stack_rows(rows)])
    return result.last_hidden_state if hasattr(result, "last_hidden_state") else result


def _remarks(rows, where, n_valid, limit, cfg, notes, out: _Out, block, first) -> None:
    """Counts spectra cut to ``limit`` peaks and spectra with m/z (peak or precursor) outside the model's range."""
    for row, j, n in zip(rows, where, n_valid):
        said = []
        if n > limit:
            said.append(f"{n} valid peaks, the {limit} most intense kept")
            out.truncated.append(f"row {first + j} ({block[j].label}): {n} peaks")
        has_mz = (row.token_type == TokenType.PEAK) | (row.token_type == TokenType.PREC)
        outside = has_mz & ((row.mz < cfg.mz_min) | (row.mz >= cfg.mz_max))
        if outside.any():
            said.append(f"m/z {float(row.mz[outside].max()):g} outside the model's range "
                        f"[{cfg.mz_min:g}, {cfg.mz_max:g})")
            out.out_of_range.append(f"row {first + j} ({block[j].label}): m/z {float(row.mz[outside].max()):g}")
        notes[j] = "; ".join(said)
