"""The plan's numbers: card arithmetic, ZeRO memory sharding, and the activation model against the
tensors autograd actually saves."""
import dataclasses
import subprocess
import sys

import pytest
import torch

from megatron_nexa.cluster_plan import Cluster, activation_bytes, model_state_bytes, plan
from megatron_nexa.config import AttentionBackend, Recompute, load_config
from tests.conftest import REPO
from tests.spectra import random_batch


def test_card_arithmetic():
    cfg = load_config(REPO / "configs/model/nexa_7b.yaml").model
    p = plan(cfg, Cluster())
    assert p["global_batch"] == 512
    assert p["tokens_per_epoch"] == pytest.approx(1.38e11, rel=0.01)  # card §5.2
    assert p["steps_per_epoch"] == pytest.approx(1.05e6, rel=0.01) and p["total_steps"] == pytest.approx(3.16e6, rel=0.01)
    assert p["flops_total"] == pytest.approx(p["flops_6ND"], rel=0.05)  # the s² term is small at 258 tokens
    assert p["memory_gib"][3]["total"] < p["memory_gib"][2]["total"] < p["memory_gib"][1]["total"]


def test_zero_stages_shard_what_they_should():
    full = model_state_bytes(1000, 1, 1)
    assert full == {"params": 2000, "grads": 2000, "optimizer": 16000}
    assert model_state_bytes(1000, 1, 4) == {"params": 2000, "grads": 2000, "optimizer": 4000}
    assert model_state_bytes(1000, 2, 4) == {"params": 2000, "grads": 500, "optimizer": 4000}
    assert model_state_bytes(1000, 3, 4) == {"params": 500, "grads": 500, "optimizer": 4000}


@pytest.mark.parametrize("recompute", list(Recompute))
def test_activation_model_matches_saved_tensors(parallel, recompute):
    from megatron_nexa.model.attention_mask import spectral_attention_mask
    from megatron_nexa.model.encoder import NexaEncoder

    cfg = dataclasses.replace(load_config(REPO / "configs/model/small.yaml").model, recompute=recompute, max_peaks=126,
                              attention_backend=AttentionBackend.SDPA)
    enc = NexaEncoder(cfg, params_dtype=torch.bfloat16).to(torch.bfloat16).train()
    b, s = 8, 128
    tt, mz, inten, seg = random_batch(0, b=b, length=s, max_peaks=126)
    hidden = enc.embedding(tt, mz, inten).detach().transpose(0, 1).contiguous().requires_grad_()
    mask = spectral_attention_mask(tt, seg, cfg.local_window)
    params = {p.untyped_storage().data_ptr() for p in enc.parameters()}
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        enc.transformer(hidden, attention_mask=mask)
    measured = sum(v for k, v in saved.items() if k not in params)
    predicted = activation_bytes(cfg, b, s, recompute, during_backward=False)
    assert 0.8 < measured / predicted < 1.3, (measured, predicted)


def test_cli_prints_the_plan():
    out = subprocess.run([sys.executable, "-m", "megatron_nexa.cli.plan", "--model", str(REPO / "configs/model/nexa_3b.yaml"),
                          "--nodes", "2", "--gpus-per-node", "8", "--gpu-memory-gib", "80"],
                         capture_output=True, text=True, check=True).stdout
    assert "2 node(s) x 8 GPUs" in out and "ZeRO-3" in out and "days" in out
