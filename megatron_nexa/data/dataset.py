"""Pretraining samples: stream index + kind → token rows with masked-peak and retention-order targets.

Everything random about a sample comes from ``np.random.default_rng((seed, stream_index, kind))``, so a
sample is the same whichever rank, DataLoader worker or restart produces it, and differs between epochs
(the stream index carries the epoch).
"""
import numpy as np
from torch.utils.data import Dataset

from megatron_nexa.config import PairInput, RunConfig
from megatron_nexa.data.augment import augmented_view
from megatron_nexa.data.blend import BlendIndex
from megatron_nexa.data.masking import IGNORE, mask_row, mz_bins
from megatron_nexa.data.pairs import draw_partner
from megatron_nexa.data.sampler import Kind
from megatron_nexa.data.source import SpectraSource
from megatron_nexa.data.tokenize import Row, pair_row, single_row
from megatron_nexa.tokens import TokenType


class PretrainingDataset(Dataset):
    def __init__(self, sources: list[SpectraSource], weights: list[float], cfg: RunConfig, seed: int):
        self.sources, self.cfg, self.seed = sources, cfg, seed
        self.blend = BlendIndex([len(s) for s in sources], weights)

    def __len__(self) -> int:
        return len(self.blend)

    def _spectrum(self, k: int, j: int) -> tuple[np.ndarray, np.ndarray, float]:
        mz, inten = self.sources[k].peaks(j)
        return np.asarray(mz), np.asarray(inten), float(self.sources[k].precursor_mz[j])

    def _finish(self, row: Row, rng, stream_index: int, source: int, spectra: tuple[int, int], is_pair=False,
                label=0.0, group=-1, mask=True, ro_group=-1) -> dict:
        peaks = row.token_type == TokenType.PEAK  # the whole spectrum, before masking: the [CLS] target
        peak_bin = np.where(peaks, mz_bins(row.mz, self.cfg.model), IGNORE)
        peak_weight = np.where(peaks, np.sqrt(np.maximum(row.intensity, 0.0)), 0.0).astype(np.float32)
        if mask:
            mz_t, int_t = mask_row(row, rng, self.cfg.masking, self.cfg.model)
        else:
            mz_t = int_t = np.full(len(row.token_type), IGNORE, np.int64)
        return {"token_type": row.token_type, "mz": row.mz, "intensity": row.intensity, "segment": row.segment,
                "mz_target": mz_t, "intensity_target": int_t, "peak_bin": peak_bin, "peak_weight": peak_weight,
                "is_pair": np.bool_(is_pair),
                "ro_label": np.float32(label), "view_group": np.int64(group),
                "ro_group": np.int64(ro_group), "sample_index": np.int64(stream_index),
                "source": np.int64(source), "spectra": np.array(spectra, np.int64)}

    def __getitem__(self, item: tuple[int, int]) -> list[dict]:
        stream_index, kind = item
        rng = np.random.default_rng((self.seed, stream_index, kind))
        k, j = self.blend.locate(stream_index % len(self.blend))
        spectrum = self._spectrum(k, j)
        max_peaks = self.cfg.model.max_peaks
        if kind == Kind.PAIR:
            partner = draw_partner(self.sources[k], j, self.cfg.data.rt_margin, rng)
            if partner is not None:
                other = self._spectrum(k, partner)
                a_first = bool(rng.random() < 0.5)  # random order → balanced labels
                a, b, (ia, ib) = (spectrum, other, (j, partner)) if a_first else (other, spectrum, (partner, j))
                rt = self.sources[k].rt
                label = 1.0 if rt[ia] < rt[ib] else 0.0
                if self.cfg.data.pair_input == PairInput.SEPARATE:  # A's row first, then B's
                    return [self._finish(single_row(*s, max_peaks), rng, stream_index, k, ids, label=label,
                                         ro_group=stream_index) for s, ids in ((a, (ia, ib)), (b, (ib, ia)))]
                return [self._finish(pair_row(a, b, max_peaks), rng, stream_index, k, (ia, ib), True, label)]
            # no partner (no run/RT, or alone in its run): the row stays a single masked spectrum
        if kind == Kind.VIEWS:
            aug = self.cfg.data.augment
            return [self._finish(single_row(*augmented_view(spectrum[0], spectrum[1], rng, aug), spectrum[2],
                                            max_peaks), rng, stream_index, k, (j, -1), group=stream_index, mask=False)
                    for _ in range(2)]
        return [self._finish(single_row(*spectrum, max_peaks), rng, stream_index, k, (j, -1))]
