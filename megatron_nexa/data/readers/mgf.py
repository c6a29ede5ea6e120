"""MGF (plain or gzipped) through pyteomics, one record at a time.

We frame records ourselves (BEGIN IONS … END IONS) and hand each to pyteomics' record parser, so a
malformed record, a truncated last record or a missing PEPMASS becomes a counted reject naming the file
and record instead of ending the file early (pyteomics' own iterator stops at the first bad line and
silently drops a record cut off at end of file). A peak line with more than two values is rejected too:
pyteomics keeps its first pair and drops the rest without a word.
"""
import gzip
from pathlib import Path
from typing import Iterator

from megatron_nexa.compat.pyteomics import PARSE_ERRORS, mgf_record_parser
from megatron_nexa.data.readers.records import ChunkBuilder
from megatron_nexa.data.spectrum import SpectraChunk

_POLARITY = {"positive": 1, "pos": 1, "+": 1, "negative": -1, "neg": -1, "-": -1}


def _open_text(path: str):
    if path.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _records(lines) -> Iterator[tuple[int, list[str] | None, str]]:
    """Yield (ordinal, lines, problem) per BEGIN IONS block, after the file header as ordinal -1."""
    header, block, ordinal, header_done = [], None, -1, False
    for line in lines:
        s = line.strip()
        if s == "BEGIN IONS":
            if not header_done:
                header_done = True
                yield -1, header, ""
            if block is not None:
                yield ordinal, None, "BEGIN IONS inside a record (missing END IONS)"
            ordinal += 1
            block = [line]
        elif block is not None:
            block.append(line)
            if s == "END IONS":
                yield ordinal, block, ""
                block = None
        elif not header_done:
            header.append(line)
    if not header_done:
        yield -1, header, ""
    if block is not None:
        yield ordinal, block, "truncated record (no END IONS before end of file)"


def _title(block: list[str] | None) -> str | None:
    for line in block or ():
        if line.startswith("TITLE="):
            return line[6:].strip()
    return None


def read_mgf(path: str, chunk_size: int) -> Iterator[tuple[SpectraChunk, list[tuple[str, str, str]]]]:
    builder = ChunkBuilder(Path(path).name)
    parse = None
    n_records = 0
    with _open_text(path) as f:
        try:
            for ordinal, block, problem in _records(f):
                if ordinal < 0:
                    parse = mgf_record_parser(block)
                    continue
                n_records += 1
                record = f"#{ordinal}" + (f" {t}" if (t := _title(block)) else "")
                if problem:
                    builder.reject(record, problem)
                else:
                    _add(builder, parse, block, record)
                if len(builder) + len(builder.rejects) >= chunk_size:
                    yield builder.flush()
        except (EOFError, OSError, gzip.BadGzipFile) as e:  # truncated/corrupt gzip stream
            builder.reject(f"#{n_records}" if n_records else "-", "file ends in a corrupt or truncated stream", str(e))
    if n_records == 0 and not builder.rejects:
        builder.reject("-", "empty file: no BEGIN IONS record")
    yield builder.flush()


def _extra_values(block: list[str]) -> str | None:
    """The first line pyteomics reads as a peak (no "=", not a comment) that has three or more values."""
    for line in block:
        if "=" not in line:
            fields = line.split(None, 2)
            if len(fields) > 2 and fields[0][0] not in "#;!/":
                return line.strip()
    return None


def _add(builder: ChunkBuilder, parse, block: list[str], record: str) -> None:
    try:
        spec = parse(block)
    except PARSE_ERRORS as e:
        builder.reject(record, "unparseable record", " ".join(str(e).split())[:200])
        return
    if extra := _extra_values(block):
        builder.reject(record, "peak line with more than two values", extra[:200])
        return
    params = spec["params"]
    pepmass = params.get("pepmass")
    if not pepmass or pepmass[0] is None:
        builder.reject(record, "missing PEPMASS")
        return
    charge = params.get("charge")
    charge = int(charge[0]) if charge else 0
    polarity = _POLARITY.get(str(params.get("ionmode", "")).lower(), (charge > 0) - (charge < 0))
    rt = params.get("rtinseconds")
    builder.add(spec["m/z array"], spec["intensity array"], float(pepmass[0]), charge=charge, polarity=polarity,
                rt=None if rt is None else float(rt), run_id=params.get("lc_system"),
                instrument=params.get("instrument_type") or params.get("instrument"),
                smiles=params.get("smiles"), inchikey=params.get("inchikey"),
                record_id=params.get("title") or record)
