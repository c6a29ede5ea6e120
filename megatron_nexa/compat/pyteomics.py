"""What we rely on inside pyteomics beyond its public API: the MGF reader's per-record parser."""
import io

from pyteomics import auxiliary, mgf

from megatron_nexa.compat import require

SUPPORTED = ">=4.7,<6"
VERSION = require("pyteomics", SUPPORTED)

# what the record parser raises on a malformed record
PARSE_ERRORS = (auxiliary.PyteomicsError, ValueError, IndexError, TypeError)


def mgf_record_parser(header: list[str]):
    """``parse(lines) -> dict`` for one BEGIN IONS … END IONS record, with the file header's parameters applied
    (pyteomics' ``MGF`` reader: m/z and intensity as plain arrays, the charge left out of the arrays). We frame
    records ourselves; ``MGF._read_spectrum_lines`` is the parser its own iterator hands each record to."""
    reader = mgf.MGF(io.StringIO("".join(header)), use_header=True, convert_arrays=1, read_charges=False)
    return reader._read_spectrum_lines
