"""``embed()``'s inputs → one item per input record, in input order: its peaks, or why it has none.

Rows of the output are these items, so a record that cannot be read still holds its place. Text files are
read one record at a time: a reader reports rejected records beside the chunk of accepted ones, not between
them, so only single-record chunks keep each reject in its place. GeMS HDF5 chunks are read whole (a chunk
is either all read or all rejected). A problem of a whole file (record ``-``: empty, unreadable before its
first record) is no record: it gets no row, and is reported.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from megatron_nexa.data.readers import detect_format, plan_units, read_unit

GEMS_ROWS = 4096


@dataclass
class Item:
    source: str  # file name, or "" for in-memory spectra
    index: int | None  # 0-based place of the record in its file (or in the input list); None: the whole file
    record: str  # TITLE / native id / row number; "" if the record has none
    peaks: tuple | None  # (mz, intensity, precursor_mz), or None when unreadable
    reason: str = ""

    @property
    def label(self) -> str:
        return " ".join(p for p in (self.source, "" if self.index is None else f"#{self.index}", self.record) if p)


def check_paths(spectra) -> None:
    """Missing or unknown-format files fail before any model work, naming the file."""
    for s in [spectra] if isinstance(spectra, (str, Path)) else spectra if isinstance(spectra, (list, tuple)) else []:
        if isinstance(s, (str, Path)):
            if not Path(s).is_file():
                raise FileNotFoundError(f"{s}: no such file")
            detect_format(str(s))


def items(spectra) -> Iterator[Item]:
    if isinstance(spectra, (str, Path)):
        spectra = [spectra]
    for i, s in enumerate(spectra):
        if isinstance(s, (str, Path)):
            yield from _file_items(str(s))
        else:
            yield _spectrum_item(s, i)


def _spectrum_item(s, i: int) -> Item:
    if hasattr(s, "peaks"):  # matchms Spectrum
        name = str(s.get("title") or s.get("spectrum_id") or "")
        mz, intensity, precursor = s.peaks.mz, s.peaks.intensities, s.get("precursor_mz")
    else:
        try:
            mz, intensity, precursor = s
        except (TypeError, ValueError):
            raise TypeError(f"spectrum #{i}: expected (mz, intensity, precursor_mz) or a matchms Spectrum, "
                            f"got {type(s).__name__}") from None
        name = ""
    mz, intensity = np.asarray(mz, float).ravel(), np.asarray(intensity, float).ravel()
    if len(mz) != len(intensity):
        return Item("", i, name, None, f"{len(mz)} m/z values but {len(intensity)} intensities")
    try:
        precursor = float(np.nan if precursor is None else precursor)
    except (TypeError, ValueError):
        return Item("", i, name, None, f"precursor m/z {precursor!r} is not a number")
    return Item("", i, name, (mz, intensity, precursor))


def _file_items(path: str) -> Iterator[Item]:
    name, index = Path(path).name, 0
    for unit in plan_units([path], GEMS_ROWS):
        chunk_size = GEMS_ROWS if unit.fmt == "gems" else 1
        for chunk, rejects in read_unit(unit, chunk_size):
            if len(chunk) and rejects and len(chunk) + len(rejects) > 1:
                raise RuntimeError(f"{name}: the reader mixed accepted and rejected records in one chunk; "
                                   "their order is unknown")
            ids = chunk.columns.get("record_id")
            ids = ids.to_pylist() if hasattr(ids, "to_pylist") else ids
            for r in range(len(chunk)):
                record = _strip_ordinal(str(ids[r]) if ids is not None else "", index)
                n = chunk.count[r]
                yield Item(name, index, record, (chunk.mz[r, :n], chunk.intensity[r, :n], float(chunk.precursor_mz[r])))
                index += 1
            for record, reason, *detail in rejects:
                why = reason + (f": {detail[0]}" if detail and detail[0] else "")
                if record == "-":
                    yield Item(name, None, "", None, why)
                else:
                    yield Item(name, index, _strip_ordinal(str(record), index), None, why)
                    index += 1


def _strip_ordinal(record: str, index: int) -> str:
    """MGF records are named ``#<ordinal> <TITLE>`` or by TITLE alone; the ordinal is already the item's index."""
    head, _, rest = record.partition(" ")
    return rest.strip() if head == f"#{index}" else record
