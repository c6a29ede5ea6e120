"""nexa-finetune end to end on MassBank with a tiny model: every task trains through DeepSpeed ZeRO-3 and
reports test metrics beside its baseline; a frozen encoder stays bit-identical, an unfrozen one moves."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from megatron_nexa.config import load_config
from megatron_nexa.convert.to_hf import write_hf
from megatron_nexa.model.pretraining import NexaSpecForPretraining
from megatron_nexa.model.reference import ReferenceEncoder
from tests.conftest import REPO, child_env


@pytest.fixture(scope="module")
def hf_tiny(tmp_path_factory):
    cfg = load_config(REPO / "configs/model/tiny.yaml").model
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("hf") / "tiny"
    write_hf(NexaSpecForPretraining(cfg, ReferenceEncoder(cfg)).state_dict(), cfg, out)
    return out


def finetune(hf, data, out, task, *extra):
    run = subprocess.run([sys.executable, "-m", "megatron_nexa.cli.finetune", "--config",
                          str(REPO / f"configs/finetune/{task}.yaml"), f"--init={hf}", f"--data={data}",
                          f"--out_dir={out}", "--steps=4", "--micro_batch_size=8", "--max_train=400",
                          "--log_interval=2", "--n_bits=256", *extra],
                         cwd=REPO, env=child_env(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1"),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads((out / "results.json").read_text()), load_file(str(out / "model.safetensors"))


@pytest.mark.parametrize("task,metric,baseline", [
    ("fingerprint", "fingerprint_tanimoto", "baseline (training bit frequencies)"),
    ("rt", "mae", "baseline (training mean per group)"),
    ("ccs", "mae", "baseline (training mean per group)"),
    ("contrastive", "hit@1", "before fine-tuning"),
])
def test_each_task_trains_and_reports_a_baseline(massbank, hf_tiny, tmp_path, task, metric, baseline):
    results, _ = finetune(hf_tiny, massbank, tmp_path / task, task)
    assert results["task"] == task and results["train"] > 100 and results["test"] > 50
    assert results["train"] + results["train_dropped"] == 400  # counts in = used + dropped
    assert metric in results and metric in results[baseline]
    if task in ("rt", "ccs"):
        assert results["mae"] > 0 and 0 <= results["coverage_68"] <= results["coverage_95"] <= 1
        assert results["calibration_rows"] >= 20 and results["std_scale"] > 0  # intervals scaled on validation
        assert 0 <= results["coverage_68_raw"] <= results["coverage_95_raw"] <= 1
    rows = np.load(tmp_path / task / "rows.npz")  # the per-row scores finetune.report pairs across runs
    row_key = "abs_error" if task in ("rt", "ccs") else metric
    assert rows[row_key].mean() == pytest.approx(results[metric]) and len(rows["keys"]) == len(rows[row_key])
    if task != "contrastive":  # contrastive rows are the queries, a subset
        assert len(rows["keys"]) == results["test"]


def test_frozen_encoder_is_untouched_and_unfrozen_moves(massbank, hf_tiny, tmp_path):
    original = load_file(str(hf_tiny / "model.safetensors"))
    _, frozen = finetune(hf_tiny, massbank, tmp_path / "frozen", "fingerprint", "--unfreeze_after=null")
    _, thawed = finetune(hf_tiny, massbank, tmp_path / "thawed", "fingerprint", "--unfreeze_after=2")
    name = "encoder.transformer.layers.0.mlp.linear_fc1.weight"
    assert torch.equal(frozen[name], original[name].float())
    assert not torch.equal(thawed[name], original[name].float())


def test_random_init_baseline_ignores_the_pretrained_weights(massbank, hf_tiny, tmp_path):
    original = load_file(str(hf_tiny / "model.safetensors"))
    _, fresh = finetune(hf_tiny, massbank, tmp_path / "fresh", "fingerprint", "--unfreeze_after=null",
                        "--random_init=true")
    name = "encoder.transformer.layers.0.mlp.linear_fc1.weight"
    assert fresh[name].shape == original[name].shape and not torch.equal(fresh[name], original[name].float())
