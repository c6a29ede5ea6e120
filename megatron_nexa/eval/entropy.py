"""Spectral entropy similarity (Li et al. 2021, ``ms-entropy``): the library-search score that beats the dot
product on large libraries, for every pair of a retrieval library.

Flash entropy search scores one query against a whole indexed library at once; its open search (no precursor
filter) is exactly ``calculate_entropy_similarity`` on the same cleaned peaks, so a library of n spectra costs n
searches rather than n² pairwise calls. Spectra are cleaned as ms-entropy cleans them for search: peaks within
1.6 Da of the precursor and under 1 % of the maximum dropped, peaks closer than 0.05 Da centroided. The fragment
tolerance is the 0.02 Da of the entropy paper. A spectrum left with no peak scores 0 against every spectrum.
"""
import numpy as np

MS2_TOLERANCE_DA = 0.02


def entropy_similarity(items: list[tuple], tolerance: float = MS2_TOLERANCE_DA) -> np.ndarray:
    """``[n, n]`` entropy similarity of ``items`` (``(mz, intensity, precursor_mz)``), symmetric."""
    from ms_entropy import FlashEntropySearch

    if tolerance <= 0:
        raise ValueError(f"the fragment tolerance must be positive, got {tolerance}")
    search = FlashEntropySearch(max_ms2_tolerance_in_da=tolerance)
    library = [{"precursor_mz": float(prec), "peaks": _peaks(mz, inten), "row": row}
               for row, (mz, inten, prec) in enumerate(items)]
    indexed = search.build_index(library)  # sorted by precursor m/z; spectra left without peaks are dropped
    columns = np.array([s["row"] for s in indexed], dtype=np.int64)
    out = np.zeros((len(items), len(items)), np.float64)
    if len(columns) == 0:
        return out
    for row, (mz, inten, prec) in enumerate(items):
        peaks = search.clean_spectrum_for_search(float(prec), _peaks(mz, inten))
        if len(peaks):
            out[row, columns] = search.open_search(peaks=peaks, ms2_tolerance_in_da=tolerance)
    return np.clip((out + out.T) / 2, 0.0, 1.0)  # float32 arithmetic: the two directions differ in the last bits


def _peaks(mz, intensity) -> np.ndarray:
    return np.stack([np.asarray(mz, np.float32), np.asarray(intensity, np.float32)], axis=1)
