"""ZeRO-3 leaf modules (ds_configs/zero3*.json: each transformer layer and each head fetched whole, with one
set of hooks) change speed only: losses equal those of per-submodule fetching, with and without
recompute, and with the layer's two halves (attention, MLP) as leaves. Every loss
term is on, so each head (and the masked-peak head's second use, on [CLS]) is exercised."""
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, child_env, zero3_every_parameter_partitioned

DRIVER = """
import json, sys
import torch
from megatron_nexa.testing import engine_step, synthetic_batch
from megatron_nexa.config import load_config
from megatron_nexa.engine.setup import build
cfg = load_config("configs/model/tiny.yaml", sys.argv[2:])
built = build(cfg, sys.argv[1])
from deepspeed.utils import get_z3_leaf_modules
batch = synthetic_batch(built.cfg, built.cfg.train.micro_batch_size)
batch = batch.replace(view_group=torch.tensor([0, 0, 1, 1, -1, -1, -1, -1]),  # two spectra, two views each: InfoNCE
                      is_pair=torch.arange(8) >= 4,  # rows 4-7: retention-order pairs (the RO head)
                      ro_label=torch.tensor([0.0, 0, 0, 0, 1, 1, 0, 0]))
from megatron_nexa.losses import pretraining_terms
terms = pretraining_terms(batch, built.engine(*batch.model_inputs()), built.cfg.loss)
assert {"retention_order", "contrastive", "cls_spectrum"} <= set(terms), terms
nodes, seen, todo = {}, set(), [terms["loss"].grad_fn]
while todo:  # the backward graph's node types
    node = todo.pop()
    if node is None or node in seen:
        continue
    seen.add(node)
    nodes[type(node).__name__] = nodes.get(type(node).__name__, 0) + 1
    todo.extend(next_node for next_node, _ in node.next_functions)
losses = [engine_step(built, batch).item() for _ in range(5)]
from torch._dynamo.utils import counters
print(json.dumps({"losses": losses, "nodes": nodes, "graphs": counters["stats"]["unique_graphs"], "leaves": [type(m).__name__ for m in get_z3_leaf_modules(built.engine.module)],
                  "device_synchronising_timer": built.engine.tput_timer.config.enabled}))
"""
HALVES = ["megatron.core.transformer.attention.SelfAttention", "megatron_nexa.model.layer_specs.NexaMLP",
          "megatron_nexa.model.heads.MaskedPeakHead"]


def run(tmp_path, leaves: list[str] | None, recompute: str, *overrides: str) -> dict:
    """``leaves``: the leaf classes (None: the shipped ones); ``overrides``: more run-config overrides."""
    ds = zero3_every_parameter_partitioned()
    z = ds["zero_optimization"]
    assert z["leaf_module"]["classes"], "the shipped ZeRO-3 config names leaf modules"
    if leaves is not None:
        z["leaf_module"] = {"classes": leaves}
    if recompute == "none":
        ds.pop("activation_checkpointing", None)
    path = tmp_path / f"ds_{len(leaves or ())}_{recompute}.json"
    path.write_text(json.dumps(ds))
    out = subprocess.run([sys.executable, "-c", DRIVER, str(path), f"model.recompute={recompute}", "loss.contrastive=1.0",
                          "loss.cls_spectrum=1.0", "train.micro_batch_size=8", "train.global_batch_size=8",
                          "optim.warmup_steps=1", *overrides],
                         cwd=REPO, env=child_env(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1"),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("recompute", ["none", "full"])
def test_leaf_modules_give_the_same_losses(tmp_path, recompute):
    shipped, halves, none = (run(tmp_path, leaves, recompute) for leaves in (None, HALVES, []))
    assert shipped["leaves"] == ["NexaTransformerLayer"] * 2 + ["MaskedPeakHead", "RetentionOrderHead",
                                                                 "ContrastiveHead"]  # tiny: 2 layers
    assert halves["leaves"] == ["SelfAttention", "NexaMLP"] * 2 + ["MaskedPeakHead"] and none["leaves"] == []
    assert shipped["losses"] == halves["losses"] == none["losses"]
    assert not shipped["device_synchronising_timer"]  # DeepSpeed's default syncs the device twice a step
    assert shipped["losses"][-1] < shipped["losses"][0]
    if recompute == "none":  # (under recompute the layers' graph is built in the backward pass)
        # the layers' linears are ours, not DeepSpeed's ZeRO-3 replacement of F.linear (which adds each bias in
        # a second kernel): 4 a layer (the MLP's second with its GELU), 2 layers
        nodes = shipped["nodes"]
        assert (nodes["LinearKeepingWeightBackward"], nodes["GeluLinearBackward"]) == (6, 2), nodes


def test_compiled_layers_under_zero3(tmp_path):
    """``train.compile``: each layer's forward compiled (inductor), ZeRO-3 gathering and releasing around it."""
    eager, compiled = run(tmp_path, None, "none"), run(tmp_path, None, "none", "train.compile=true")
    assert eager["graphs"] == 0 and compiled["graphs"] == 1  # two layers, one graph
    assert compiled["losses"] == pytest.approx(eager["losses"], rel=2e-2)
    assert compiled["losses"][-1] < compiled["losses"][0]
