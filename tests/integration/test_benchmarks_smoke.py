"""Every CPU benchmark keeps running, at sizes that take seconds (their numbers are benchmarks, not pass/fail
criteria), and prints its ratio against the baseline it measures in the same run. gpu_step, host_time/host_step,
retention_order_heldout and trace_syncs have their own tests; gpu_check.sh's variants are checked in
tests/unit/test_gpu_check_variants.py."""
import re
import subprocess
import sys

import numpy as np

from tests.conftest import REPO, child_env
from tests.spectra_files import random_spectra, write_mgf


def bench(*args, timeout=300) -> str:
    run = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, env=child_env(DS_ACCELERATOR="cpu"),
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_train_step_against_plain_pytorch():
    out = bench("benchmarks/train_step.py", "--models", "tiny", "--steps", "1")
    assert re.search(r"tiny .*DeepSpeed ZeRO-3 .* steps/s .*plain PyTorch .* engine/plain time \d+\.\d\dx", out), out


def test_preprocess_gems_against_a_bare_read():
    out = bench("benchmarks/preprocess_gems.py", "--spectra", "2000", "--peaks", "16", "--repeats", "1")
    assert "bare chunked h5py read" in out and re.search(r"pipeline time / bare read time\s+: \d+\.\dx", out), out


def test_preprocess_memory_at_two_input_sizes():
    out = bench("benchmarks/preprocess_memory.py", "--spectra", "500")
    assert re.search(r"ratio \d+\.\d\dx for 10x the input", out), out


def test_preprocess_mgf_against_pyteomics_and_matchms(tmp_path):
    write_mgf(tmp_path / "s.mgf.gz", random_spectra(np.random.default_rng(0), 200), gz=True)
    out = bench("benchmarks/preprocess_mgf.py", "--file", tmp_path / "s.mgf.gz", "--repeats", "1")
    assert "200 spectra" in out and re.search(r"pipeline time / pyteomics parse : \d+\.\d\dx", out), out
    assert re.search(r"pipeline time / matchms load\s+: \d+\.\d\dx", out), out


def test_convert_memory_against_the_fp32_model(massbank):
    out = bench("benchmarks/convert_memory.py", "--hidden", "128", "--layers", "1", "--data", massbank, timeout=600)
    assert re.search(r"peak RSS of the conversion: .* = \d+\.\d\dx the fp32 model", out), out
    assert "interpreter with torch + DeepSpeed imported" in out


def test_data_loader_against_a_bare_read(massbank):
    out = bench("benchmarks/data_loader.py", "--data", massbank, "--batches", "2")
    assert "bare read of the shards" in out, out
    for kind in ("masked-peak batches", "retention-order pairs"):
        assert re.search(kind + r".* = +\d+\.\dx the GPU's need .* \d+\.\d\dx the bare read's time", out), out


def test_plan_memory_reads_every_recorded_peak(tmp_path):
    out = bench("benchmarks/plan_memory.py", "--fixture", tmp_path / "peaks.json")
    kinds = dict(re.findall(r"^(.+?)\s+(\d+) rows: measured / plan", out, re.M))
    assert set(kinds) == {"ZeRO-1, SDPA", "ZeRO-2, SDPA", "ZeRO-3, SDPA", "full recompute", "megatron local attention"}
    assert (tmp_path / "peaks.json").read_text().startswith('{"about"')



def test_comm_step_prediction_against_measured_steps():
    out = bench("benchmarks/comm_step.py", "--ranks", "2", "--config", "configs/test_tiny.yaml", "--steps", "1")
    for config in ("zero1", "zero2", "zero3_cpu"):
        assert re.search(rf"{config} .* \(\d+\.\d+\) +\d+\.\d+ +\d+\.\d\d", out), out
