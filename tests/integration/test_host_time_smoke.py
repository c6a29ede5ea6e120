"""benchmarks/host_time.py and host_step.py keep running (their numbers are benchmarks, not pass/fail criteria),
and host_step partitions the tiny layers as ZeRO-3 partitions the 3B's."""
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


def host_step(*args: str) -> str:
    run = subprocess.run([sys.executable, "benchmarks/host_step.py", "--depths", "1", "2", "--steps", "1", "--repeats", "1",
                          *args], cwd=REPO, env=child_env(DS_ACCELERATOR="cpu"), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def partitioned(out: str, variant: str) -> list[str]:
    line = next(line for line in out.splitlines() if line.strip().startswith(f"{variant}: ZeRO-3 partitions"))
    names = line.split("partitions of each layer:")[1].strip()
    return [] if names == "nothing" else names.split(", ")


def test_host_step_prints_every_variant_and_partitions_the_tiny_layers_as_the_3b():
    """Scaled to the tiny layer, ZeRO-3 partitions its four weight matrices and keeps biases and norms whole, as at
    the 3B; at DeepSpeed's own element counts (``--unscaled``) every tiny parameter is under the persistence
    threshold and nothing would be fetched."""
    out = host_step("--variants", "amp", "zero3")
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("amp ", "zero3 "))]
    assert [r[0] for r in rows] == ["amp", "zero3"] and rows[0][6] == "1.00", out
    assert int(rows[1][-2]) > int(rows[0][-2]) > 0, out  # ZeRO-3 makes more Python calls a layer
    assert partitioned(out, "zero3") == at_3b_over_the_shipped_threshold() == [
        "mlp.linear_fc1.weight", "mlp.linear_fc2.weight",
        "self_attention.linear_proj.weight", "self_attention.linear_qkv.weight"]
    assert not any(line.strip().startswith("amp: ") for line in out.splitlines())
    assert partitioned(host_step("--variants", "zero3", "--unscaled"), "zero3") == []


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
