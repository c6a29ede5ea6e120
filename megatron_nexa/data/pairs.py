"""Retention-order pairs: a partner from the same LC-MS run whose RT differs by more than a margin.

RT is only comparable within one run (GeMS ``name``; MassBank ``LC_SYSTEM``). The source's cache holds
the eligible spectra sorted by (run, RT), so the partners of spectrum i are two contiguous ranges of
that order, found with two binary searches: no per-run lists in memory.
"""
import numpy as np

from megatron_nexa.data.source import SpectraSource


def draw_partner(source: SpectraSource, i: int, margin: float, rng: np.random.Generator) -> int | None:
    """A random partner of ``i`` (same run, ``|ΔRT| > margin``), or None when there is none."""
    pos = int(source.ro_pos[i])
    if pos < 0:
        return None  # no run or no RT: this spectrum does not enter pairs
    start, end = (int(x) for x in source.ro_bounds[source.run[i]])
    rt = float(source.rt[i])
    rts = source.ro_rt[start:end]
    lo = start + int(np.searchsorted(rts, rt - margin, side="left"))  # [start, lo): earlier by > margin
    hi = start + int(np.searchsorted(rts, rt + margin, side="right"))  # [hi, end): later by > margin
    n_before, n_after = lo - start, end - hi
    if n_before + n_after == 0:
        return None
    k = int(rng.integers(n_before + n_after))
    return int(source.ro_order[start + k if k < n_before else hi + (k - n_before)])
