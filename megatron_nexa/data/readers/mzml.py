"""mzML (plain or gzipped) through pyteomics: MS2 scans with precursor m/z, charge and RT."""
import gzip
from pathlib import Path
from typing import Iterator

from lxml import etree
from pyteomics import auxiliary, mzml

from megatron_nexa.data.readers.records import ChunkBuilder
from megatron_nexa.data.spectrum import SpectraChunk

_MINUTES = {"minute", "min", "UO:0000031"}


def _precursor(spec: dict) -> tuple[float | None, int]:
    try:
        ion = spec["precursorList"]["precursor"][0]["selectedIonList"]["selectedIon"][0]
    except (KeyError, IndexError):
        return None, 0
    mz = ion.get("selected ion m/z")
    return (None if mz is None else float(mz)), int(ion.get("charge state", 0) or 0)


def _rt_seconds(spec: dict) -> float | None:
    try:
        t = spec["scanList"]["scan"][0]["scan start time"]
    except (KeyError, IndexError):
        return None
    unit = getattr(t, "unit_info", None)
    return float(t) * 60.0 if unit in _MINUTES else float(t)


def read_mzml(path: str, chunk_size: int) -> Iterator[tuple[SpectraChunk, list[tuple[str, str, str]]]]:
    builder = ChunkBuilder(Path(path).name)
    run = Path(path.removesuffix(".gz")).stem
    opener = gzip.open(path, "rb") if path.lower().endswith(".gz") else open(path, "rb")
    n = 0
    with opener as f:
        try:
            for spec in mzml.read(f, use_index=False, decode_binary=True):
                n += 1
                record = str(spec.get("id", f"#{n - 1}"))
                if spec.get("ms level") != 2:
                    builder.reject(record, f"not an MS2 scan (ms level {spec.get('ms level')})")
                else:
                    prec, charge = _precursor(spec)
                    if prec is None:
                        builder.reject(record, "missing precursor m/z")
                    else:
                        polarity = 1 if "positive scan" in spec else (-1 if "negative scan" in spec else 0)
                        builder.add(spec["m/z array"], spec["intensity array"], prec,
                                    charge=charge * (polarity or 1), polarity=polarity, rt=_rt_seconds(spec),
                                    run_id=run, record_id=record)
                if len(builder) + len(builder.rejects) >= chunk_size:
                    yield builder.flush()
        except (auxiliary.PyteomicsError, etree.XMLSyntaxError, EOFError, OSError, KeyError, ValueError) as e:
            builder.reject(f"after spectrum #{n}" if n else "-", "mzML parse error: rest of file unreadable", str(e))
    if n == 0 and not builder.rejects:
        builder.reject("-", "empty file: no spectra")
    yield builder.flush()
