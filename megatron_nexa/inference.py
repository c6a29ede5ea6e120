"""``embed()``: spectra in, one embedding per spectrum out (``[CLS]``, or the mean of the peak tokens), with
the training preprocessing.

Accepts MGF/mzML paths, ``(mz, intensity, precursor_mz)`` tuples, or matchms ``Spectrum`` objects, and a
model: a Hugging Face folder written by ``nexa-convert to-hf``, or a loaded model. Peaks go through the
same filters as preprocessing (settings from the model's config; ``min_peaks`` is not applied, so every
spectrum with at least one valid peak is embedded) and the same tokenisation as training. Rows come back
in input order; a spectrum with no valid peak (or an unreadable record) gets a row of NaN, and a warning
says how many and which.
"""
import dataclasses
import enum
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from megatron_nexa.data.filters import PreprocessSettings, filter_chunk
from megatron_nexa.data.readers import Unit, detect_format, read_unit
from megatron_nexa.data.spectrum import SpectraChunk, pad_peak_lists
from megatron_nexa.data.tokenize import single_row, stack_rows
from megatron_nexa.tokens import TokenType


class Pooling(str, enum.Enum):
    """What one spectrum's vector is: the ``[CLS]`` token (trained by retention order and InfoNCE), or the
    mean of its peak tokens (trained by masked-peak prediction)."""

    CLS = "cls"
    MEAN = "mean"


def load_model(model, device="cpu"):
    if isinstance(model, (str, Path)):
        from transformers import AutoModel

        model = AutoModel.from_pretrained(str(model), trust_remote_code=True)
    return model.to(device).eval()


def _settings(model) -> PreprocessSettings:
    saved = dict(getattr(model.config, "preprocessing", None) or {})
    known = {f.name for f in dataclasses.fields(PreprocessSettings)}
    saved = {k: v for k, v in saved.items() if k in known}
    if "split_fractions" in saved:
        saved["split_fractions"] = tuple(saved["split_fractions"])
    return dataclasses.replace(PreprocessSettings(**saved), min_peaks=1)


def _chunks(spectra, chunk_size: int):
    """Yield (SpectraChunk, n_unreadable) in input order."""
    if isinstance(spectra, (str, Path)):
        spectra = [spectra]
    items = list(spectra)
    if items and all(isinstance(s, (str, Path)) for s in items):
        for path in items:
            for chunk, rejects in read_unit(Unit(str(path), detect_format(str(path))), chunk_size):
                yield chunk, rejects
        return
    for start in range(0, len(items), chunk_size):
        mzs, ints, precs = [], [], []
        for s in items[start:start + chunk_size]:
            if hasattr(s, "peaks"):  # matchms Spectrum
                mzs.append(np.asarray(s.peaks.mz, float))
                ints.append(np.asarray(s.peaks.intensities, float))
                precs.append(float(s.get("precursor_mz") or np.nan))
            else:
                mz, inten, prec = s
                mzs.append(np.asarray(mz, float))
                ints.append(np.asarray(inten, float))
                precs.append(float(prec))
        mz, inten, count = pad_peak_lists(mzs, ints)
        yield SpectraChunk(mz, inten, count, np.asarray(precs)), []


def embed(spectra, model, batch_size: int = 64, device: str = "cpu", per_peak: bool = False, progress: bool = False,
          pooling: Pooling | str = Pooling.CLS):
    """``[n, hidden]`` float32 array, one row per spectrum pooled as ``pooling`` says (and, with
    ``per_peak``, a list of ``[n_peaks_i, hidden]`` arrays of the peak tokens, in m/z order)."""
    pooling = Pooling(pooling)
    pooled, peaks, bad = _embed(spectra, model, (pooling,), batch_size, device, per_peak, progress)
    _warn_unembedded(bad)
    return (pooled[pooling], peaks) if per_peak else pooled[pooling]


def embed_pooled(spectra, model, poolings=tuple(Pooling), batch_size: int = 64, device: str = "cpu",
                 per_peak: bool = False, progress: bool = False) -> tuple[dict, list]:
    """Every pooling in ``poolings`` from one encoder pass: ``({pooling: [n, hidden] array}, peak rows)``;
    the peak rows are ``[n_peaks_i, hidden]`` arrays with ``per_peak``, else ``None``s."""
    pooled, peak_rows, bad = _embed(spectra, model, poolings, batch_size, device, per_peak, progress)
    _warn_unembedded(bad)
    return pooled, peak_rows


def _warn_unembedded(bad: list[str]) -> None:
    """Names the spectra that became NaN rows; the warning points at the first caller outside this package."""
    if not bad:
        return
    package, frame, level = str(Path(__file__).parent), sys._getframe(0), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(f"{len(bad)} spectra could not be embedded (NaN rows): " + "; ".join(bad[:5])
                  + (" …" if len(bad) > 5 else ""), stacklevel=level)


@torch.no_grad()
def _embed(spectra, model, poolings, batch_size, device, per_peak, progress) -> tuple[dict, list, list[str]]:
    poolings = [Pooling(p) for p in poolings]
    model = load_model(model, device)
    cfg = model.config
    settings = _settings(model)
    encoder = getattr(model, "encoder", model)
    parts, peak_rows, bad = {p: [] for p in poolings}, [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(unit="spectra", desc="embed")
    offset = 0
    for chunk, unreadable in _chunks(spectra, 4096):
        for record, reason in unreadable:
            bad.append(f"{record}: {reason}")
        filtered = filter_chunk(chunk, settings)
        out = {p: np.full((len(chunk), cfg.hidden_size), np.nan, np.float32) for p in poolings}
        peaks_out = [None] * len(chunk)
        kept_rows = np.setdiff1d(np.arange(len(chunk)), filtered.rejected)
        for r, why in zip(filtered.rejected, filtered.reasons):
            bad.append(f"#{offset + r}: {why}")
        k = filtered.chunk
        for start in range(0, len(k), batch_size):
            rows = [single_row(k.mz[i, :k.count[i]], k.intensity[i, :k.count[i]], float(k.precursor_mz[i]), cfg.max_peaks)
                    for i in range(start, min(start + batch_size, len(k)))]
            tensors = [t.to(device) for t in stack_rows(rows)]
            result = encoder(*tensors)
            hidden = result.last_hidden_state if hasattr(result, "last_hidden_state") else result
            dest = kept_rows[start:start + len(rows)]
            is_peak = (tensors[0] == TokenType.PEAK).unsqueeze(-1).to(hidden.dtype)
            for p in poolings:
                pooled = hidden[:, 0] if p == Pooling.CLS else (hidden * is_peak).sum(1) / is_peak.sum(1)
                out[p][dest] = pooled.float().cpu().numpy()
            if per_peak:
                for j, row in enumerate(rows):
                    n = int((row.token_type == TokenType.PEAK).sum())
                    peaks_out[dest[j]] = hidden[j, 2:2 + n].float().cpu().numpy()
        for p in poolings:
            parts[p].append(out[p])
        peak_rows += peaks_out
        offset += len(chunk)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    empty = np.zeros((0, cfg.hidden_size), np.float32)
    return {p: np.concatenate(v) if v else empty for p, v in parts.items()}, peak_rows, bad
