"""One rule for which peaks a spectrum keeps past ``top_k`` / ``max_peaks``: higher intensity, then lower m/z, then
the earlier peak, whatever else is in the chunk (embed() filters blocks of spectra of any width together)."""
import numpy as np

from megatron_nexa.data.filters import PreprocessSettings, filter_chunk
from megatron_nexa.data.peak_selection import most_intense
from megatron_nexa.data.spectrum import SpectraChunk, pad_peak_lists
from megatron_nexa.data.tokenize import single_row
from megatron_nexa.tokens import TokenType


def by_the_rule(intensity, mz, k):
    order = sorted(range(len(mz)), key=lambda j: (-intensity[j], mz[j], j))
    return sorted(j for j in order[:k] if np.isfinite(intensity[j]))


def test_most_intense_follows_the_rule_on_ties():
    rng = np.random.default_rng(0)
    for _ in range(500):
        n, width, k = rng.integers(1, 5), rng.integers(1, 30), rng.integers(1, 30)
        intensity = rng.integers(1, 5, size=(n, width)).astype(float)  # few values: many ties
        mz = rng.integers(1, 6, size=(n, width)).astype(float)
        intensity[rng.random((n, width)) < 0.3] = -np.inf  # slots without a peak
        kept = most_intense(intensity, mz, k)
        assert kept.shape == (n, min(k, width))
        for r in range(n):
            assert [j for j in kept[r] if np.isfinite(intensity[r, j])] == by_the_rule(intensity[r], mz[r], k)


TIED = (np.array([500.0, 300, 100, 400, 200, 50]), np.array([9.0, 5, 5, 5, 5, 1]))  # four peaks tied at 5


def test_filter_keeps_the_lower_mz_of_tied_peaks_in_any_chunk():
    wide = (np.linspace(60, 900, 40), np.full(40, 2.0))
    for spectra in ([TIED], [TIED, wide], [wide, TIED]):
        mz, intensity, count = pad_peak_lists([s[0] for s in spectra], [s[1] for s in spectra])
        chunk = SpectraChunk(mz, intensity, count, np.full(len(spectra), 1000.0))
        out = filter_chunk(chunk, PreprocessSettings(top_k=3, min_peaks=1)).chunk
        row = [len(s[0]) for s in spectra].index(6)
        assert out.mz[row, :out.count[row]].tolist() == [100.0, 200.0, 500.0]


def test_tokenisation_keeps_the_lower_mz_of_tied_peaks():
    order = np.argsort(TIED[0])
    row = single_row(TIED[0][order], TIED[1][order] / 9, 600.0, max_peaks=3)
    assert row.mz[row.token_type == TokenType.PEAK].tolist() == [100.0, 200.0, 500.0]
