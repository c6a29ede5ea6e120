"""Small spectra files written by the tests themselves: MGF and mzML (GeMS-layout HDF5:
``megatron_nexa.testing.write_gems``)."""
import base64
import gzip

import numpy as np


def write_mgf(path, spectra, gz=False):
    """spectra: dicts with title, pepmass, mz, intensity and optional extra MGF fields."""
    lines = []
    for s in spectra:
        lines.append("BEGIN IONS")
        lines.append(f"TITLE={s['title']}")
        if s.get("pepmass") is not None:
            lines.append(f"PEPMASS={s['pepmass']}")
        for key in ("CHARGE", "RTINSECONDS", "IONMODE", "INCHIKEY", "SMILES", "LC_SYSTEM"):
            if key in s:
                lines.append(f"{key}={s[key]}")
        lines += [f"{m} {i}" for m, i in zip(s["mz"], s["intensity"])]
        lines.append("END IONS")
        lines.append("")
    text = "\n".join(lines)
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)


def random_spectra(rng, n, prefix="S", with_keys=True):
    out = []
    for k in range(n):
        npk = int(rng.integers(3, 40))
        prec = float(rng.uniform(150, 900))
        s = {"title": f"{prefix}{k}", "pepmass": round(prec, 4),
             "mz": np.round(np.sort(rng.uniform(50, prec, npk)), 4), "intensity": np.round(rng.uniform(1, 1e5, npk), 1),
             "CHARGE": "1+", "RTINSECONDS": round(float(rng.uniform(10, 900)), 2), "IONMODE": "positive",
             "LC_SYSTEM": f"lab:{k % 3}"}
        if with_keys:
            s["INCHIKEY"] = f"{'ABCDEFGHIJKLMN'[k % 14] * 3}{k:011d}-UHFFFAOYSA-N"
        out.append(s)
    return out


def _cv(acc, name, value="", unit=None):
    u = f' unitCvRef="UO" unitAccession="{unit[0]}" unitName="{unit[1]}"' if unit else ""
    return f'<cvParam cvRef="MS" accession="{acc}" name="{name}" value="{value}"{u}/>'


def _array(values, acc, name):
    data = base64.b64encode(np.asarray(values, dtype="<f8").tobytes()).decode()
    return (f'<binaryDataArray encodedLength="{len(data)}">{_cv("MS:1000523", "64-bit float")}'
            f'{_cv("MS:1000576", "no compression")}{_cv(acc, name)}<binary>{data}</binary></binaryDataArray>')


def write_mzml(path, scans):
    """scans: dicts with id, ms_level, mz, intensity, optional precursor, charge, rt_min."""
    body = []
    for i, s in enumerate(scans):
        prec = ""
        if s.get("precursor") is not None:
            prec = ('<precursorList count="1"><precursor><selectedIonList count="1"><selectedIon>'
                    f'{_cv("MS:1000744", "selected ion m/z", s["precursor"])}'
                    f'{_cv("MS:1000041", "charge state", s.get("charge", 1))}'
                    '</selectedIon></selectedIonList></precursor></precursorList>')
        body.append(
            f'<spectrum index="{i}" id="{s["id"]}" defaultArrayLength="{len(s["mz"])}">'
            f'{_cv("MS:1000511", "ms level", s["ms_level"])}{_cv("MS:1000130", "positive scan")}'
            f'<scanList count="1"><scan>{_cv("MS:1000016", "scan start time", s.get("rt_min", 1.0), ("UO:0000031", "minute"))}'
            f'</scan></scanList>{prec}<binaryDataArrayList count="2">'
            f'{_array(s["mz"], "MS:1000514", "m/z array")}{_array(s["intensity"], "MS:1000515", "intensity array")}'
            '</binaryDataArrayList></spectrum>')
    path.write_text('<?xml version="1.0" encoding="utf-8"?>\n<mzML xmlns="http://psi.hupo.org/ms/mzml" version="1.1.0">'
                    f'<run id="r"><spectrumList count="{len(scans)}">{"".join(body)}</spectrumList></run></mzML>')

