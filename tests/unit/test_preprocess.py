"""Preprocessing on small files the tests write: formats, filters, bad input, splits, layout."""
import json

import h5py
import numpy as np
import pytest

from megatron_nexa.cli.dataset import main as dataset_main
from megatron_nexa.config import ConfigError
from megatron_nexa.data.dedup import HashSet
from megatron_nexa.data.filters import PreprocessSettings, filter_chunk
from megatron_nexa.data.preprocess import JobOptions, preprocess
from megatron_nexa.data.spectrum import SpectraChunk, pad_peak_lists
from megatron_nexa.data.version import DatasetVersion
from megatron_nexa.testing import write_gems
from tests.spectra_files import random_spectra, write_mgf, write_mzml

QUIET = JobOptions(progress=False)


def build(tmp_path, files, settings=PreprocessSettings(), opts=QUIET, version=1):
    m = preprocess([str(f) for f in files], str(tmp_path / "out"), "t", version, settings, opts, log=lambda *_: None)
    return m, tmp_path / "out" / f"t_v{version}"


def rejects(root):
    return [json.loads(line) for line in (root / "rejects.jsonl").read_text().splitlines()]


def test_filters_top_k_sort_normalise():
    mz, inten, count = pad_peak_lists([np.array([300.0, 100, 200, np.nan, -5, 150]), np.array([5.0, 6])],
                                      [np.array([1.0, 2, 3, 4, 9, 0]), np.array([1.0, 1])])
    chunk = SpectraChunk(mz, inten, count, np.array([400.0, np.nan]), {"record_id": np.array(["a", "b"], object)})
    out = filter_chunk(chunk, PreprocessSettings(top_k=2, min_peaks=2))
    assert out.chunk.mz.tolist() == [[100.0, 200.0]]
    np.testing.assert_allclose(out.chunk.intensity, [[2 / 3, 1.0]])
    assert out.rejected.tolist() == [1] and out.reasons == ["invalid precursor m/z"]
    above = filter_chunk(chunk, PreprocessSettings(min_peaks=1, precursor_tolerance=-150, mz_min=120))
    assert above.chunk.mz[0, : above.chunk.count[0]].tolist() == [200.0]  # 150 has zero intensity, 300 > 400-150


@pytest.mark.parametrize("kwargs, field", [({"top_k": 0}, "top_k"), ({"min_peaks": 0}, "min_peaks"),
                                           ({"split_key": "x"}, "split_key"), ({"split_fractions": (0.5, 0.5, 0.5)}, "split_fractions"),
                                           ({"mz_min": 10.0, "mz_max": 5.0}, "mz_min"),
                                           ({"exclude_labs": ("",)}, "exclude_labs"),
                                           ({"exclude_labs": ("Eawag:1a2b",)}, "exclude_labs")])
def test_bad_settings(kwargs, field):
    with pytest.raises(ConfigError, match=f"preprocess.{field}"):
        PreprocessSettings(**kwargs)


def test_excluded_labs_are_a_set():
    assert PreprocessSettings(exclude_labs=("RIKEN", "LCSB", "RIKEN")).exclude_labs == ("LCSB", "RIKEN")
    assert PreprocessSettings(exclude_labs=("B", "A")) == PreprocessSettings(exclude_labs=("A", "B"))


def test_hash_set_dedups_within_and_across_calls():
    s = HashSet()
    assert s.add_new(np.array([5, 3, 5, 9], np.uint64)).tolist() == [True, True, False, True]
    for k in range(20):  # force merges
        s.add_new(np.arange(k * 10, k * 10 + 10, dtype=np.uint64) + 1000)
    assert s.add_new(np.array([3, 1005, 4242], np.uint64)).tolist() == [False, False, True]
    assert len(s) == 3 + 200 + 1


def test_malformed_mgf_is_counted_not_lost(tmp_path):
    good = random_spectra(np.random.default_rng(0), 5)
    path = tmp_path / "bad.mgf"
    write_mgf(path, good)
    text = path.read_text()
    text += "BEGIN IONS\nTITLE=nopep\n100 5\n101 6\n102 7\nEND IONS\n"
    text += "BEGIN IONS\nTITLE=garbage\nPEPMASS=300\n100 abc\nEND IONS\n"
    text += "BEGIN IONS\nTITLE=nans\nPEPMASS=300\n100 nan\n101 5\nnan 3\nEND IONS\n"
    text += "BEGIN IONS\nTITLE=cut\nPEPMASS=300\n100 5\n"
    path.write_text(text)
    (tmp_path / "empty.mgf").write_text("")
    m, root = build(tmp_path, [path, tmp_path / "empty.mgf"])
    c = m.counts
    assert c["records_in"] == 10 and c["written"] == 5 and c["rejected"] == 5
    reasons = {(r["file"], r["record"].split()[-1]): r["reason"] for r in rejects(root)}
    assert reasons[("bad.mgf", "nopep")] == "missing PEPMASS"
    assert reasons[("bad.mgf", "garbage")].startswith("unparseable record")
    assert reasons[("bad.mgf", "nans")] == "fewer than 3 valid peaks"
    assert reasons[("bad.mgf", "cut")].startswith("truncated record")
    assert reasons[("empty.mgf", "-")].startswith("empty file")


def test_truncated_gzip_is_reported(tmp_path):
    write_mgf(tmp_path / "a.mgf.gz", random_spectra(np.random.default_rng(1), 200), gz=True)
    data = (tmp_path / "a.mgf.gz").read_bytes()
    (tmp_path / "cut.mgf.gz").write_bytes(data[: len(data) // 2])
    m, root = build(tmp_path, [tmp_path / "cut.mgf.gz"])
    assert m.counts["records_in"] == m.counts["written"] + m.counts["rejected"]
    assert any("corrupt or truncated" in r["reason"] for r in rejects(root))
    assert 0 < m.counts["written"] < 200


def test_mzml(tmp_path):
    scans = [{"id": "scan=1", "ms_level": 1, "mz": [100, 200], "intensity": [1, 2]},
             {"id": "scan=2", "ms_level": 2, "mz": [300, 100, 200], "intensity": [3, 1, 2], "precursor": 350.5,
              "charge": 2, "rt_min": 2.0},
             {"id": "scan=3", "ms_level": 2, "mz": [100, 150, 160], "intensity": [1, 1, 1]}]
    write_mzml(tmp_path / "run1.mzML", scans)
    m, root = build(tmp_path, [tmp_path / "run1.mzML"], PreprocessSettings(split_fractions=(1.0, 0.0, 0.0)))
    assert (m.counts["written"], m.counts["rejected"]) == (1, 2)
    split = DatasetVersion(root)["train"]
    mz, inten = split.peaks(0)
    assert mz.tolist() == [100, 200, 300] and inten.tolist() == pytest.approx([1 / 3, 2 / 3, 1])
    meta = split.metadata(0)
    assert (meta["precursor_mz"], meta["charge"], meta["rt"], meta["run_id"], meta["record_id"]) == (350.5, 2, 120.0, "run1", "scan=2")
    assert {r["reason"] for r in rejects(root)} == {"not an MS2 scan (ms level 1)", "missing precursor m/z"}


def test_gems_hdf5_round_trip(tmp_path):
    write_gems(tmp_path / "g.hdf5", 1000, peaks=16, seed=3)
    opts = JobOptions(progress=False, hdf5_rows_per_unit=300, hdf5_chunk_rows=128)
    m, root = build(tmp_path, [tmp_path / "g.hdf5"], PreprocessSettings(min_peaks=1, split_key="run"), opts)
    assert m.counts["records_in"] == 1000 and m.counts["rejected"] == 0
    with h5py.File(tmp_path / "g.hdf5") as f:
        spec, prec, runs = f["spectrum"][:], f["precursor_mz"][:], f["name"][:]
    version = DatasetVersion(root)
    seen = 0
    for split in version.splits.values():
        for i in range(len(split)):
            meta = split.metadata(i)
            row = int(meta["record_id"])
            mz, inten = split.peaks(i)
            keep = spec[row, 0] > 0
            np.testing.assert_array_equal(mz, spec[row, 0][keep])
            np.testing.assert_allclose(inten, spec[row, 1][keep] / spec[row, 1][keep].max(), rtol=1e-6)
            assert meta["precursor_mz"] == pytest.approx(prec[row]) and meta["run_id"] == runs[row].decode()
            seen += 1
    assert seen == 1000
    # split by run: a run never spans two splits
    runs_per_split = [set(s.column("run_id")) for s in version.splits.values()]
    assert sum(len(r) for r in runs_per_split) == len(set().union(*runs_per_split))


def test_empty_hdf5_is_reported(tmp_path):
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f.create_dataset("spectrum", shape=(0, 2, 8), dtype="f4")
        f.create_dataset("precursor_mz", shape=(0,), dtype="f4")
    m, root = build(tmp_path, [tmp_path / "empty.h5"])
    assert (m.counts["records_in"], m.counts["written"], m.counts["rejected"]) == (1, 0, 1)
    assert rejects(root) == [{"file": "empty.h5", "record": "-", "reason": "empty file: no rows"}]


@pytest.mark.parametrize("mutate, message", [
    (lambda f: f.create_dataset("spectrum", data=np.zeros((4, 3, 8), "f4")), "must have shape (N, 2, P)"),
    (lambda f: (f.create_dataset("spectrum", data=np.zeros((4, 2, 8), "f4")),
                f.create_dataset("precursor_mz", data=np.zeros(3, "f4"))), "same length"),
    (lambda f: f.create_dataset("peaks", data=np.zeros(3)), "needs root datasets 'spectrum' and 'precursor_mz'"),
])
def test_bad_hdf5_names_file_and_dataset(tmp_path, mutate, message):
    """In strict mode; otherwise the file is one reject line (test_preprocess_faults)."""
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        mutate(f)
        if "precursor_mz" not in f and "spectrum" in f:
            f.create_dataset("precursor_mz", data=np.zeros(4, "f4"))
    with pytest.raises(ValueError, match="bad.h5") as err:
        build(tmp_path, [path], opts=JobOptions(progress=False, strict=True))
    assert message in str(err.value)


def test_duplicates_and_structure_split(tmp_path):
    spectra = random_spectra(np.random.default_rng(2), 300)
    for s in spectra[100:200]:
        s["INCHIKEY"] = spectra[0]["INCHIKEY"]  # one structure, many spectra
    write_mgf(tmp_path / "a.mgf", spectra)
    write_mgf(tmp_path / "b.mgf", spectra[:10])  # exact duplicates in another file
    m, root = build(tmp_path, [tmp_path / "a.mgf", tmp_path / "b.mgf"],
                    PreprocessSettings(split_fractions=(0.6, 0.2, 0.2)))
    assert m.counts["rejected_by_reason"] == {"exact duplicate of an earlier spectrum": 10}
    version = DatasetVersion(root)
    blocks = {name: {k.split("-")[0] for k in split.column("inchikey")} for name, split in version.splits.items()}
    assert not (blocks["train"] & blocks["val"]) and not (blocks["train"] & blocks["test"]) and not (blocks["val"] & blocks["test"])
    assert all(len(split) > 0 for split in version.splits.values())


def test_shards_cut_by_size_and_megatron_reads_them(tmp_path):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    write_mgf(tmp_path / "a.mgf", random_spectra(np.random.default_rng(4), 400))
    m, root = build(tmp_path, [tmp_path / "a.mgf"], opts=JobOptions(progress=False, shard_bytes=10_000))
    shards = m.shards["train"]
    assert len(shards) > 3 and all(s["files"][".bin"]["bytes"] <= 10_000 for s in shards)
    split = DatasetVersion(root)["train"]
    for k, prefix in enumerate(split.prefixes[:2]):
        theirs = IndexedDataset(prefix)
        assert len(theirs) == shards[k]["num_spectra"]
        for j in range(len(theirs)):
            mz, inten = split.peaks(int(split.offsets[k]) + j)
            np.testing.assert_array_equal(theirs[j], np.concatenate([mz, inten]))


def test_verify_catches_tampering_and_rerun_is_a_no_op(tmp_path, capsys):
    write_mgf(tmp_path / "a.mgf", random_spectra(np.random.default_rng(5), 50))
    m, root = build(tmp_path, [tmp_path / "a.mgf"])
    assert dataset_main(["verify", str(root)]) == 0
    again, _ = build(tmp_path, [tmp_path / "a.mgf"])
    assert again == m
    with pytest.raises(FileExistsError, match="choose a new --version"):
        build(tmp_path, [tmp_path / "a.mgf"], PreprocessSettings(min_peaks=5))
    manifest = json.loads((root / "manifest.json").read_text())  # as an earlier revision of the processing wrote it
    old = {**manifest, "extra": {k: v for k, v in manifest["extra"].items() if k != "processing_revision"}}
    (root / "manifest.json").write_text(json.dumps({**old, "extra": {**old["extra"], "fingerprint": "0" * 64}}))
    with pytest.raises(FileExistsError, match="made by an earlier revision of the preprocessing .* remove it to rebuild"):
        build(tmp_path, [tmp_path / "a.mgf"])
    (root / "manifest.json").write_text(json.dumps(manifest))
    bin_file = root / "shards/train/train_00000.bin"
    data = bytearray(bin_file.read_bytes())
    data[10] ^= 0xFF
    bin_file.write_bytes(bytes(data))
    assert dataset_main(["verify", str(root)]) == 1
    assert "train_00000.bin" in capsys.readouterr().out


def test_inspect_and_stats(tmp_path, capsys):
    write_mgf(tmp_path / "a.mgf", random_spectra(np.random.default_rng(6), 50))
    _, root = build(tmp_path, [tmp_path / "a.mgf"])
    assert dataset_main(["inspect", str(root), "--index", "0"]) == 0
    assert dataset_main(["stats", str(root)]) == 0
    out = capsys.readouterr().out
    assert "record_id" in out and "precursor m/z" in out and "in 50 = written 50 + rejected 0" in out
    assert dataset_main(["inspect", str(root), "--index", "999999"]) == 2
