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


def test_retrieval_ablation_ranks_nexa_evals_libraries(massbank, tmp_path):
    """The same export named twice ranks identically; the squeezed binned spectra and random init are there; the
    queries are the library spectra whose structure has another spectrum there, as nexa-eval counts them."""
    import json

    import torch

    from megatron_nexa.config import load_config
    from megatron_nexa.convert.to_hf import write_hf
    from megatron_nexa.model.pretraining import NexaSpecForPretraining
    from megatron_nexa.model.reference import ReferenceEncoder

    cfg = load_config(REPO / "configs/model/tiny.yaml").model
    torch.manual_seed(0)
    write_hf(NexaSpecForPretraining(cfg, ReferenceEncoder(cfg)).state_dict(), cfg, tmp_path / "hf")
    out = bench("benchmarks/retrieval_ablation.py", "--data", massbank, "--max-train", 500, "--dims", "8,64",
                f"a={tmp_path / 'hf'}", f"b={tmp_path / 'hf'}", "--out", tmp_path / "r.json")
    assert "structure-disjoint:" in out and "lab- and structure-disjoint:" in out
    result = json.loads((tmp_path / "r.json").read_text())
    for test in ("test", "lab"):
        r = result["results"][test]["rankings"]
        assert {"binned spectrum", "binned, PCA to 8", "binned, random projection to 64", "random-init [CLS]",
                "a [CLS]", "b mean of peaks"} <= set(r)
        assert r["a [CLS]"] == r["b [CLS]"] and r["binned spectrum"]["minus_binned"] == 0
        assert all(0 <= v["hit@1"] <= 1 and v["interval"][0] <= v["minus_binned"] <= v["interval"][1] for v in r.values())
        assert result["results"][test]["queries"] > 0
