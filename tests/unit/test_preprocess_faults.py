"""Bad input and user errors: counted rejects with one reason key each, clear errors, no tracebacks."""
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from megatron_nexa.cli.dataset import main as dataset_main
from megatron_nexa.cli.preprocess import main as preprocess_main
from megatron_nexa.data.filters import PreprocessSettings
from megatron_nexa.data.preprocess import JobOptions, preprocess
from tests.conftest import REPO
from megatron_nexa.testing import write_gems
from tests.spectra_files import random_spectra, write_mgf, write_mzml

QUIET = JobOptions(progress=False)


def build(tmp_path, files, settings=PreprocessSettings(), opts=QUIET):
    m = preprocess([str(f) for f in files], str(tmp_path / "out"), "t", 1, settings, opts, log=lambda *_: None)
    return m, tmp_path / "out/t_v1"


def rejects(root):
    return [json.loads(line) for line in (root / "rejects.jsonl").read_text().splitlines()]


def _group_spectrum(f):
    f.create_group("spectrum")
    f.create_dataset("precursor_mz", data=np.zeros(4, "f4"))


@pytest.mark.parametrize("make, reason, detail", [
    (lambda p: p.write_bytes(b"not hdf5 at all" * 10), "not a readable HDF5 file", "file signature not found"),
    (lambda p: h5py.File(p, "w").create_dataset("peaks", data=np.zeros(3)), "not the GeMS layout",
     "needs root datasets 'spectrum' and 'precursor_mz'"),
    (lambda p: _group_spectrum(h5py.File(p, "w")), "not the GeMS layout", "'spectrum' is not a dataset"),
])
def test_bad_hdf5_is_one_reject_line_and_strict_refuses_it(tmp_path, make, reason, detail):
    make(tmp_path / "bad.h5")
    write_gems(tmp_path / "good.h5", 50, seed=1)
    m, root = build(tmp_path, [tmp_path / "bad.h5", tmp_path / "good.h5"], PreprocessSettings(min_peaks=1))
    assert (m.counts["records_in"], m.counts["written"], m.counts["rejected"]) == (51, 50, 1)
    [line] = rejects(root)
    assert (line["file"], line["record"], line["reason"]) == ("bad.h5", "-", reason) and detail in line["detail"]
    with pytest.raises(ValueError, match="bad.h5") as err:
        preprocess([str(tmp_path / "bad.h5")], str(tmp_path / "strict"), "t", 1, PreprocessSettings(),
                   JobOptions(progress=False, strict=True), log=lambda *_: None)
    assert reason in str(err.value)


def test_strict_refuses_a_text_file_that_yields_nothing(tmp_path, capsys):
    write_mgf(tmp_path / "a.mgf", random_spectra(np.random.default_rng(0), 5))
    (tmp_path / "empty.mgf").write_text("")
    args = [str(tmp_path / "a.mgf"), str(tmp_path / "empty.mgf"), "--out", str(tmp_path / "out"), "--name", "t",
            "--no-progress"]
    assert preprocess_main([*args, "--version", "1", "--strict"]) == 2
    err = capsys.readouterr().err
    assert "empty.mgf: empty file" in err and len(err.strip().splitlines()) == 1
    assert preprocess_main([*args, "--version", "2"]) == 0


def test_corrupt_hdf5_chunk_rejects_its_rows(tmp_path):
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        spec = np.stack([np.arange(40 * 8).reshape(40, 8) + 50, np.ones((40, 8))], axis=1).astype("f4")
        f.create_dataset("spectrum", data=spec, chunks=(10, 2, 8), compression="gzip")
        f.create_dataset("precursor_mz", data=np.full(40, 900, "f4"))
        info = f["spectrum"].id.get_chunk_info_by_coord((10, 0, 0))
    data = bytearray(path.read_bytes())
    data[info.byte_offset:info.byte_offset + info.size] = b"\xff" * info.size
    path.write_bytes(bytes(data))
    opts = JobOptions(progress=False, hdf5_chunk_rows=10)
    m, root = build(tmp_path, [path], opts=opts)
    assert (m.counts["records_in"], m.counts["written"], m.counts["rejected"]) == (40, 30, 10)
    lines = rejects(root)
    assert {(r["record"], r["reason"]) for r in lines} == {(str(i), "unreadable HDF5 rows") for i in range(10, 20)}


def test_out_is_a_file_is_a_user_error(tmp_path, capsys):
    write_mgf(tmp_path / "a.mgf", random_spectra(np.random.default_rng(0), 5))
    (tmp_path / "file").write_text("x")
    code = preprocess_main([str(tmp_path / "a.mgf"), "--out", str(tmp_path / "file"), "--name", "t", "--version", "1",
                            "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and str(tmp_path / "file") in err and len(err.strip().splitlines()) == 1


def test_inspect_into_a_closed_pipe_is_quiet(tmp_path):
    write_mgf(tmp_path / "a.mgf", random_spectra(np.random.default_rng(0), 5))
    _, root = build(tmp_path, [tmp_path / "a.mgf"])
    proc = subprocess.Popen([sys.executable, "-m", "megatron_nexa.cli.dataset", "inspect", str(root), "--index", "0"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head` that has already exited: every write meets a closed pipe
    err = proc.stderr.read().decode()
    proc.wait()
    assert err == "" and proc.returncode != 2


def test_peak_line_with_more_than_two_values_is_rejected(tmp_path):
    path = tmp_path / "a.mgf"
    write_mgf(path, random_spectra(np.random.default_rng(0), 3))
    path.write_text(path.read_text() + "BEGIN IONS\nTITLE=three\nPEPMASS=300\n100 5\n101 6 7\n102 7\nEND IONS\n")
    m, root = build(tmp_path, [path])
    assert (m.counts["written"], m.counts["rejected"]) == (3, 1)
    [line] = rejects(root)
    assert line["record"].endswith("three") and line["reason"] == "peak line with more than two values"
    assert "101 6 7" in line["detail"]


def test_hdf5_peaks_in_counts_real_peaks(tmp_path):
    write_gems(tmp_path / "g.h5", 200, peaks=16, seed=2)
    with h5py.File(tmp_path / "g.h5") as f:
        real = int((f["spectrum"][:, 0] > 0).sum())
    m, _ = build(tmp_path, [tmp_path / "g.h5"], PreprocessSettings(min_peaks=1))
    assert real < 200 * 16 and m.counts["peaks_in"] == real == m.counts["peaks_written"]


def test_verify_checks_reject_lines_and_names_a_truncated_manifest(tmp_path, capsys):
    path = tmp_path / "a.mgf"
    write_mgf(path, random_spectra(np.random.default_rng(0), 5))
    path.write_text(path.read_text() + "BEGIN IONS\nTITLE=nopep\n100 5\n101 6\n102 7\nEND IONS\n")
    _, root = build(tmp_path, [path])
    manifest = root / "manifest.json"
    data = json.loads(manifest.read_text())
    data["rejects"]["lines"] += 1
    manifest.write_text(json.dumps(data))
    assert dataset_main(["verify", str(root)]) == 1
    assert "rejects.jsonl" in capsys.readouterr().out
    manifest.write_text(manifest.read_text()[:50])
    assert dataset_main(["verify", str(root)]) == 2
    assert "manifest.json" in capsys.readouterr().err


def test_parse_errors_are_one_reason_key_with_details_in_the_line(tmp_path):
    scans = [{"id": f"scan={i}", "ms_level": 2, "mz": [100, 200, 300], "intensity": [1, 2, 3], "precursor": 400}
             for i in range(4)]
    for name, cut in (("a.mzML", 0.5), ("b.mzML", 0.8)):
        write_mzml(tmp_path / name, scans)
        text = (tmp_path / name).read_text()
        (tmp_path / name).write_text(text[: int(len(text) * cut)])
    mgf = tmp_path / "c.mgf"
    mgf.write_text("BEGIN IONS\nTITLE=x\nPEPMASS=300\n100 abc\nEND IONS\n"
                   "BEGIN IONS\nTITLE=y\nPEPMASS=300\nzz 5\nEND IONS\n")
    m, root = build(tmp_path, [tmp_path / "a.mzML", tmp_path / "b.mzML", mgf])
    bad = {k: v for k, v in m.counts["rejected_by_reason"].items() if k != "exact duplicate of an earlier spectrum"}
    assert bad == {"mzML parse error: rest of file unreadable": 2, "unparseable record": 2}
    details = [r["detail"] for r in rejects(root) if r["reason"].startswith("mzML")]
    assert all("line" in d and "column" in d for d in details) and len(set(details)) == 2
