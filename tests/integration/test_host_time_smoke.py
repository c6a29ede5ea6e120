"""benchmarks/host_time.py and host_step.py keep running (their numbers are benchmarks, not pass/fail criteria)."""
import json
import subprocess
import sys

from tests.conftest import REPO, child_env


def test_host_time_prints_every_row():
    run = subprocess.run([sys.executable, "benchmarks/host_time.py", "--layers", "1", "--repeats", "1", "--calls", "2"],
                         cwd=REPO, env=child_env(DS_ACCELERATOR="cpu"), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "megatron-core linears (baseline)" in run.stdout and "our layer spec" in run.stdout
    assert "with torch's linear (not shipped)" in run.stdout


def test_host_step_prints_every_variant():
    run = subprocess.run([sys.executable, "benchmarks/host_step.py", "--depths", "1", "2", "--variants", "amp", "zero3",
                          "--steps", "1", "--repeats", "1"],
                         cwd=REPO, env=child_env(DS_ACCELERATOR="cpu"), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line.split() for line in run.stdout.splitlines() if line.strip().startswith(("amp ", "zero3 "))]
    assert [r[0] for r in rows] == ["amp", "zero3"] and rows[0][6] == "1.00", run.stdout
    assert int(rows[1][-2]) > int(rows[0][-2]) > 0, run.stdout  # ZeRO-3 makes more Python calls a layer


PARTITIONED = """
import json, tempfile
from pathlib import Path
from benchmarks import gpu_step, gpu_variants, host_step
out = {}
for scaled in (False, True):
    variant = gpu_variants.VARIANTS["zero3"]
    cfg = gpu_variants.variant_config("tiny", 2, 4, variant)
    variant = host_step.at_width(variant, cfg) if scaled else variant
    with tempfile.TemporaryDirectory() as tmp:
        engine, _, close = gpu_step.build_variant(cfg, variant, Path(tmp))
        names = [n for n, p in engine.module.named_parameters() if ".layers.0." in n and not p.ds_persist]
        out[str(scaled)] = sorted(n.split(".layers.0.")[1] for n in names)
        close()
print(json.dumps(out))
"""


def test_host_step_partitions_the_tiny_layers_as_the_3b():
    """At DeepSpeed's own element counts ZeRO-3 keeps every tiny parameter whole (under the persistence threshold);
    scaled to the tiny layer, it partitions the four weight matrices and keeps biases and norms, as at the 3B."""
    run = subprocess.run([sys.executable, "-c", PARTITIONED], cwd=REPO, env=child_env(DS_ACCELERATOR="cpu"),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    partitioned = json.loads(run.stdout.strip().splitlines()[-1])
    assert partitioned["False"] == []
    assert partitioned["True"] == at_3b_over_the_shipped_threshold() == [
        "mlp.linear_fc1.weight", "mlp.linear_fc2.weight",
        "self_attention.linear_proj.weight", "self_attention.linear_qkv.weight"]


def at_3b_over_the_shipped_threshold() -> list[str]:
    """The 3B layer's parameters that ds_configs/zero3.json's persistence threshold leaves partitioned."""
    import torch

    from megatron_nexa.config import load_config
    from megatron_nexa.model.reference import TransformerLayer

    threshold = json.loads((REPO / "ds_configs/zero3.json").read_text())["zero_optimization"][
        "stage3_param_persistence_threshold"]
    with torch.device("meta"):
        layer = TransformerLayer(load_config(REPO / "configs/model/nexa_3b.yaml").model)
    return sorted(n for n, p in layer.named_parameters() if p.numel() > threshold)  # DeepSpeed keeps numel <= threshold
