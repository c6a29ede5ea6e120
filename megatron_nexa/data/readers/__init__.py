"""Readers turn a unit of input (a file, or a row range of an HDF5 file) into SpectraChunks.

Each yields ``(chunk, rejects)``: ``rejects`` is a list of ``(record, reason, detail)`` for records that could
not become a spectrum (malformed, truncated, missing precursor, not MS2). Nothing is dropped silently. A file
that yields no record at all is one reject with record ``-``, whatever its format.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from megatron_nexa.data.spectrum import SpectraChunk

FORMATS = {".mgf": "mgf", ".mzml": "mzml", ".h5": "gems", ".hdf5": "gems", ".hdf": "gems"}


@dataclass(frozen=True)
class Unit:
    """One independent piece of work: a whole file, or rows [start, stop) of an HDF5 file."""

    path: str
    fmt: str
    start: int = 0
    stop: int | None = None
    problem: tuple[str, str] | None = None  # (reason, detail) when the file cannot be read at all

    @property
    def name(self) -> str:
        return Path(self.path).name if self.stop is None else f"{Path(self.path).name}[{self.start}:{self.stop}]"


def detect_format(path: str) -> str:
    p = Path(path.removesuffix(".gz").removesuffix(".GZ"))
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown spectra format (expected .mgf[.gz], .mzML[.gz], .h5/.hdf5)")
    return fmt


def plan_units(paths: list[str], hdf5_rows_per_unit: int, strict: bool = False) -> list[Unit]:
    """A bad HDF5 file becomes one unit that yields its reject (``strict``: an error naming it, before any work)."""
    from megatron_nexa.data.readers import gems_hdf5

    units = []
    for path in paths:
        fmt = detect_format(path)
        if fmt == "gems":
            try:
                n = gems_hdf5.validate(path)
            except gems_hdf5.LayoutError as e:
                if strict:
                    raise
                units.append(Unit(path, fmt, 0, 0, (e.reason, e.detail)))
                continue
            units += [Unit(path, fmt, a, min(a + hdf5_rows_per_unit, n)) for a in range(0, n, hdf5_rows_per_unit)]
            if n == 0:
                units.append(Unit(path, fmt, 0, 0))
        else:
            units.append(Unit(path, fmt))
    return units


def read_unit(unit: Unit, chunk_size: int) -> Iterator[tuple[SpectraChunk, list[tuple[str, str, str]]]]:
    if unit.problem:
        from megatron_nexa.data.readers.records import ChunkBuilder

        builder = ChunkBuilder(Path(unit.path).name)
        builder.reject("-", *unit.problem)
        return iter([builder.flush()])
    if unit.fmt == "mgf":
        from megatron_nexa.data.readers.mgf import read_mgf as reader
    elif unit.fmt == "mzml":
        from megatron_nexa.data.readers.mzml import read_mzml as reader
    else:
        from megatron_nexa.data.readers import gems_hdf5

        return gems_hdf5.read_rows(unit.path, unit.start, unit.stop, chunk_size)
    return reader(unit.path, chunk_size)
