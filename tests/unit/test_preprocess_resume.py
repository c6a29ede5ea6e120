"""Damaged work state (a kill while a state file is written, a half-deleted work directory) is named,
discarded and redone, and a leftover work directory is removed: the output is byte-identical to an
uninterrupted build."""
import shutil

import numpy as np

from megatron_nexa.data.filters import PreprocessSettings
from megatron_nexa.data.preprocess import JobOptions, preprocess
from tests.spectra_files import random_spectra, write_mgf


def inputs(tmp_path) -> list[str]:
    files = []
    for k in range(4):
        path = tmp_path / f"in{k}.mgf"
        write_mgf(path, random_spectra(np.random.default_rng(k), 30, prefix=f"F{k}-"))
        files.append(str(path))
    return files


def run(files, out, settings=PreprocessSettings(), keep_work=False) -> str:
    lines = []
    preprocess(files, str(out), "t", 1, settings, JobOptions(progress=False, keep_work=keep_work), log=lines.append)
    return "\n".join(lines)


def tree(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_damaged_work_state_is_named_discarded_and_redone(tmp_path):
    files = inputs(tmp_path)
    run(files, tmp_path / "ref")
    out, work = tmp_path / "out", tmp_path / "out/t_v1.work"
    run(files, out, keep_work=True)
    shutil.rmtree(out / "t_v1")  # as if killed before the final rename
    (work / "plan.json").write_bytes(b"")  # killed while the plan was written
    counts = work / "unit_000001/counts.json"
    counts.write_bytes(counts.read_bytes()[:10])
    peaks = work / "unit_000002/peaks.f32"
    peaks.write_bytes(peaks.read_bytes()[:-6])
    log = run(files, out)
    for damaged in ("plan.json", "unit_000001/counts.json", "unit_000002/peaks.f32"):
        assert str(work / damaged) in log
    assert tree(out / "t_v1") == tree(tmp_path / "ref/t_v1")
    assert not work.exists()


def test_leftover_work_dir_is_removed_by_the_rerun(tmp_path):
    files = inputs(tmp_path)
    out = tmp_path / "out"
    run(files, out, keep_work=True)  # what a kill just after the final rename leaves
    before = tree(out / "t_v1")
    assert "nothing to do" in run(files, out)
    assert not (out / "t_v1.work").exists()
    assert tree(out / "t_v1") == before


def test_half_deleted_work_dir_does_not_break_a_rebuild(tmp_path):
    files = inputs(tmp_path)
    out, work = tmp_path / "out", tmp_path / "out/t_v1.work"
    run(files, out, keep_work=True)
    shutil.rmtree(out / "t_v1")  # removed to rebuild it with other settings ...
    (work / "plan.json").unlink()  # ... while the work directory was deleted half-way
    (work / "unit_000000/peaks.f32").unlink()
    (work / "unit_000001/counts.json").unlink()
    shutil.rmtree(work / "unit_000002")  # unit_000003 is whole, but made with the old settings
    other = PreprocessSettings(min_peaks=8)
    run(files, out, other)
    run(files, tmp_path / "ref", other)
    assert tree(out / "t_v1") == tree(tmp_path / "ref/t_v1")
    assert not work.exists()


def test_a_work_dir_given_by_the_user_keeps_its_other_files(tmp_path):
    """``--work-dir`` may name a scratch directory that holds other things: only the job's own files go."""
    files = inputs(tmp_path)
    work = tmp_path / "scratch"
    work.mkdir()
    (work / "my_notes.txt").write_text("keep\n")
    preprocess(files, str(tmp_path / "out"), "t", 1, PreprocessSettings(), JobOptions(progress=False, work_dir=str(work)),
               log=lambda *_: None)
    assert [p.name for p in work.iterdir()] == ["my_notes.txt"]
    lab_typo = PreprocessSettings(exclude_labs=("NoSuchLab",))
    try:
        preprocess(files, str(tmp_path / "out"), "t", 2, lab_typo, JobOptions(progress=False, work_dir=str(work)),
                   log=lambda *_: None)
    except ValueError as e:
        assert "no spectrum is from a lab named NoSuchLab" in str(e)
    else:
        raise AssertionError("a lab no spectrum is from must be an error")
    assert [p.name for p in work.iterdir()] == ["my_notes.txt"]
