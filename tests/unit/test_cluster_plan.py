"""The plan's numbers: card arithmetic, ZeRO memory sharding, and the activation model against the
tensors autograd actually saves."""
import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from megatron_nexa.cluster_plan import (Cluster, ZeroSettings, activation_bytes, default_zero, memory_bytes,
                                        outside_layer_bytes, plan)
from megatron_nexa.config import AttentionBackend, Recompute, load_config
from tests.conftest import FIXTURES, REPO
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
    one = {s: memory_bytes(1000, ZeroSettings(stage=s, reduce_bucket_size=10), 1, 0.0, 100) for s in (1, 2, 3)}
    for m in one.values():  # one rank: nothing sharded, nothing gathered
        assert (m["params"], m["grads"], m["optimizer"]) == (2000, 2000, 12000)
    four = {s: memory_bytes(1000, ZeroSettings(stage=s, reduce_bucket_size=10), 4, 0.0, 100) for s in (1, 2, 3)}
    assert [(m["params"], m["grads"], m["optimizer"]) for m in four.values()] == [
        (2000, 2000, 3000), (2000, 500, 3000), (500, 500, 3000)]
    assert one[3]["buffers"] == 20 and four[3]["buffers"] == 20 + 2 * (ZeroSettings(3).stage3_prefetch_bucket_size + 100)
    assert one[2]["buffers"] == 20 and ZeroSettings(stage=2, overlap_comm=True).overlaps  # ZeRO-2: overlap doubles


def test_peak_is_the_larger_phase():
    zero = ZeroSettings(stage=3, reduce_bucket_size=10, sub_group_size=100)
    calm = memory_bytes(1000, zero, 1, 0.0, 0)  # no activations: the step, with its fp32 gradient copy, is the peak
    assert calm["step fp32 grads"] == 400 and calm["total"] == calm["step"] > calm["forward/backward"]
    busy = memory_bytes(1000, zero, 1, 1e6, 0)
    assert busy["total"] == busy["forward/backward"] == 2000 + 2000 + 12000 + 20 + 1e6
    # ZeRO-1/2 allocate gradients as the backward frees activations: not in the forward/backward phase
    z2 = memory_bytes(1000, ZeroSettings(stage=2, reduce_bucket_size=10), 1, 1e6, 0)
    assert z2["forward/backward"] == 2000 + 12000 + 20 + 1e6


def test_zero_settings_read_from_the_shipped_configs(tmp_path):
    z3 = ZeroSettings.from_ds_config(REPO / "ds_configs/zero3.json")
    assert (z3.stage, z3.reduce_bucket_size, z3.stage3_prefetch_bucket_size) == (3, 500_000_000, 500_000_000)
    assert ZeroSettings.from_section({"stage": 2, "reduce_bucket_size": "auto"}).reduce_bucket_size == 500_000_000
    with pytest.raises(ValueError, match="zero1_missing.json"):
        ZeroSettings.from_ds_config(REPO / "ds_configs/zero1_missing.json")
    stage0 = tmp_path / "zero0.json"
    stage0.write_text('{"zero_optimization": {"stage": 0}}')
    with pytest.raises(ValueError, match="zero0.json: ZeRO stage 0"):
        ZeroSettings.from_ds_config(stage0)


def saved_bytes(module: torch.nn.Module, forward) -> int:
    """Bytes of the tensors autograd saves for the backward while ``forward()`` runs, each storage once,
    ``module``'s parameters excluded."""
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward()
    return sum(v for k, v in saved.items() if k not in params)


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
    measured = saved_bytes(enc, lambda: enc.transformer(hidden, attention_mask=mask))
    masked = 0.3  # any share: the term outside the layers is taken out again
    predicted = (activation_bytes(cfg, b, s, recompute, masked, during_backward=False)
                 - outside_layer_bytes(cfg, b, s, masked))
    assert 0.8 < measured / predicted < 1.3, (measured, predicted)


@pytest.mark.parametrize("hidden", [128, 256])
def test_whole_model_activations_match_saved_tensors(parallel, hidden):
    """Layers and what lies outside them (embedding, final LayerNorm, heads, losses) on the benchmark's batch."""
    from megatron_nexa.losses import pretraining_terms
    from megatron_nexa.model.encoder import NexaEncoder
    from megatron_nexa.model.pretraining import NexaSpecForPretraining
    from megatron_nexa.testing import synthetic_batch
    from megatron_nexa.tokens import TokenType

    run = load_config(REPO / "configs/model/small.yaml", [f"model.hidden_size={hidden}", f"model.ffn_hidden_size={4 * hidden}",
                                                          "model.num_layers=2", "model.max_peaks=126"])
    cfg, b = run.model, 8
    model = NexaSpecForPretraining(cfg, NexaEncoder(cfg, params_dtype=torch.bfloat16)).to(torch.bfloat16).train()
    batch = synthetic_batch(run, b)
    s = batch.token_type.shape[1]
    masked = (batch.token_type == TokenType.MASK).float().mean().item()
    measured = saved_bytes(model, lambda: pretraining_terms(batch, model(*batch.model_inputs()), run.loss))
    predicted = activation_bytes(cfg, b, s, Recompute.NONE, masked)
    assert 0.9 < measured / predicted < 1.1, (measured, predicted)


def one_gpu_plan_gib(settings: dict) -> float:
    """nexa-plan's memory on one GPU for a measured row's settings (tests/fixtures/gpu_peaks.json)."""
    zero = ZeroSettings(**settings["zero"])
    cluster = Cluster(gpus_per_node=1, nodes=1, micro_batch=settings["micro_batch"],
                      recompute=Recompute(settings["recompute"]), masked_fraction=settings["masked_fraction"],
                      zero={**default_zero(), zero.stage: zero})
    model = load_config(REPO / settings["model"], settings["overrides"]).model
    return plan(model, cluster)["memory_gib"][zero.stage]["total"]


def test_plan_matches_every_peak_measured_on_a_gpu():
    """Every peak gpu_step measured on a GPU (H100 and H200, the whole 3B and 7B among them; the rows and what each
    ran: tests/fixtures/gpu_peaks.json, from ``benchmarks/plan_memory.py --fixture``): ZeRO-1/2/3 within 5 % of the
    plan, full recompute and megatron's local attention within 10 %."""
    rows = json.loads((FIXTURES / "gpu_peaks.json").read_text())["rows"]
    assert len(rows) >= 80 and any("model.num_layers=36" in r["settings"]["overrides"] for r in rows)
    assert {r["kind"] for r in rows} == {"ZeRO-1, SDPA", "ZeRO-2, SDPA", "ZeRO-3, SDPA", "full recompute",
                                         "megatron local attention"}
    for r in rows:
        ratio = r["peak_gib"] / one_gpu_plan_gib(r["settings"])
        tolerance = 0.05 if r["kind"].endswith("SDPA") else 0.10
        assert abs(ratio - 1) < tolerance, (ratio, r)


def test_cli_prints_the_plan():
    out = subprocess.run([sys.executable, "-m", "megatron_nexa.cli.plan", "--model", str(REPO / "configs/model/nexa_3b.yaml"),
                          "--nodes", "2", "--gpus-per-node", "8", "--gpu-memory-gib", "80"],
                         capture_output=True, text=True, check=True).stdout
    assert "2 node(s) x 8 GPUs" in out and "ZeRO-3" in out and "days" in out
    bad = subprocess.run([sys.executable, "-m", "megatron_nexa.cli.plan", "--model", str(REPO / "configs/model/nexa_3b.yaml"),
                          "--ds-config", str(REPO / "configs/model/nexa_3b.yaml")], capture_output=True, text=True)
    assert bad.returncode == 2 and "nexa_3b.yaml: not a DeepSpeed config" in bad.stderr
