"""Synthetic inputs and small probes shared by the tests and the benchmarks (neither imports the other's modules).

- ``synthetic_batch``: a pretraining batch of full-length spectra (every peak slot used), ``MASKED_SHARE`` of
  the peaks masked, no pairs or views;
- ``engine_step``: one optimiser step of a built engine (forward, losses, backward, update);
- ``host_waits``: the synchronising CUDA calls torch sees in one step, by the line that made them;
- ``write_gems``: a GeMS-layout HDF5 file of random spectra.
"""
from pathlib import Path

import numpy as np
import torch

from megatron_nexa.data.batch import Batch
from megatron_nexa.data.masking import IGNORE, mz_bins
from megatron_nexa.tokens import TokenType

MASKED_SHARE = 0.2  # of the peaks, in synthetic_batch (nexa-plan sizes the heads' rows by it)


def synthetic_batch(cfg, rows: int, seed: int = 0) -> Batch:
    """``rows`` spectra of ``cfg.model.max_peaks`` peaks each, ``[CLS] [PREC]`` first; random m/z, intensities
    and masked-peak targets (seeded)."""
    rng = np.random.default_rng(seed)
    length = cfg.model.max_peaks + 2
    tt = np.full((rows, length), TokenType.PEAK, np.int64)
    tt[:, 0], tt[:, 1] = TokenType.CLS, TokenType.PREC
    mz = np.sort(rng.uniform(50, 900, (rows, length)), axis=1).astype(np.float32)
    inten = rng.uniform(0.01, 1, (rows, length)).astype(np.float32)
    masked = (rng.random((rows, length)) < MASKED_SHARE) & (tt == TokenType.PEAK)
    tt[masked] = TokenType.MASK
    mz_t = np.where(masked, rng.integers(0, cfg.model.mz_bins, (rows, length)), IGNORE)
    int_t = np.where(masked, rng.integers(0, cfg.model.intensity_bins, (rows, length)), IGNORE)
    peak = (tt == TokenType.PEAK) | masked
    peak_bin = np.where(masked, mz_t, np.where(peak, mz_bins(mz, cfg.model), IGNORE))
    peak_weight = np.where(peak, np.sqrt(inten), 0).astype(np.float32)
    t = torch.from_numpy
    return Batch(t(tt), t(mz), t(inten), torch.zeros(rows, length, dtype=torch.int64), t(mz_t), t(int_t),
                 t(peak_bin), t(peak_weight), torch.zeros(rows, dtype=torch.bool), torch.zeros(rows),
                 torch.full((rows,), -1), torch.full((rows,), -1),
                 torch.arange(rows), torch.zeros(rows, dtype=torch.int64), torch.zeros(rows, 2, dtype=torch.int64))


def engine_step(built, batch: Batch) -> torch.Tensor:
    """One optimiser step of the engine ``engine.setup.build`` returned, on ``batch``; the loss."""
    from megatron_nexa.losses import pretraining_terms

    loss = pretraining_terms(batch, built.engine(*batch.model_inputs()), built.cfg.loss)["loss"]
    built.engine.backward(loss)
    built.engine.step()
    return loss


def host_waits(step) -> dict[str, int] | None:
    """The synchronising CUDA calls torch sees in one call of ``step`` (``torch.cuda.set_sync_debug_mode``),
    counted by ``file:line`` of the Python line that made them; None without CUDA. Waits torch does not see
    (events, torch.distributed) are not counted: a lower bound."""
    if not torch.cuda.is_available():
        return None
    import warnings

    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    found: dict[str, int] = {}
    for w in caught:
        if "synchroniz" in str(w.message):
            where = f"{Path(w.filename).name}:{w.lineno}"
            found[where] = found.get(where, 0) + 1
    return found


def write_gems(path, n, peaks=16, seed=0, run_column="name", chunk_rows=4096):
    """A GeMS-layout file of ``n`` random spectra: top peaks in ascending m/z, zero-padded at the end, runs of
    50 spectra named in ``run_column``."""
    import h5py

    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        spec = f.create_dataset("spectrum", (n, 2, peaks), dtype="f4", chunks=(min(n, chunk_rows), 2, peaks))
        prec = f.create_dataset("precursor_mz", (n,), dtype="f4")
        rt = f.create_dataset("RT", (n,), dtype="f4")
        charge = f.create_dataset("charge", (n,), dtype="i1")
        names = f.create_dataset(run_column, (n,), dtype=h5py.string_dtype())
        for a in range(0, n, chunk_rows):
            b = min(a + chunk_rows, n)
            m = b - a
            count = rng.integers(1, peaks + 1, m)
            mz = np.sort(rng.uniform(50, 900, (m, peaks)).astype("f4"), axis=1)
            inten = rng.uniform(0.01, 1, (m, peaks)).astype("f4")
            pad = np.arange(peaks)[None, :] >= count[:, None]
            mz[pad] = 0
            inten[pad] = 0
            spec[a:b] = np.stack([mz, inten], axis=1)
            prec[a:b] = rng.uniform(100, 1000, m)
            rt[a:b] = rng.uniform(0, 1200, m)
            charge[a:b] = 1
            names[a:b] = [f"run{(a + i) // 50}" for i in range(m)]
