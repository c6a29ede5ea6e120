"""ZeRO-3 leaf modules (ds_configs/zero3*.json: attention, MLP and the masked-peak head fetched whole, with
fewer hooks) change speed only: losses equal those of per-submodule fetching, with and without recompute."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DRIVER = """
import json, sys
from benchmarks.train_step import engine_step, synthetic_batch
from megatron_nexa.config import load_config
from megatron_nexa.engine.setup import build
cfg = load_config("configs/model/tiny.yaml", sys.argv[2:])
built = build(cfg, sys.argv[1])
batch = synthetic_batch(built.cfg, built.cfg.train.micro_batch_size)
print(json.dumps([engine_step(built, batch).item() for _ in range(5)]))
"""


def losses(tmp_path, leaf: bool, recompute: str) -> list[float]:
    ds = json.loads((REPO / "ds_configs/zero3.json").read_text())
    z = ds["zero_optimization"]
    assert z["leaf_module"]["classes"], "the shipped ZeRO-3 config names leaf modules"
    z["stage3_param_persistence_threshold"] = 0  # tiny parameters would otherwise never be gathered
    if not leaf:
        z["leaf_module"] = {"classes": []}
    if recompute == "none":
        ds.pop("activation_checkpointing", None)
    path = tmp_path / f"ds_{leaf}_{recompute}.json"
    path.write_text(json.dumps(ds))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    out = subprocess.run([sys.executable, "-c", DRIVER, str(path), f"model.recompute={recompute}",
                          "train.micro_batch_size=4", "train.global_batch_size=4", "optim.warmup_steps=1"],
                         cwd=REPO, env={**env, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("recompute", ["none", "full"])
def test_leaf_modules_give_the_same_losses(tmp_path, recompute):
    with_leaf, without = losses(tmp_path, True, recompute), losses(tmp_path, False, recompute)
    assert with_leaf == without
    assert with_leaf[-1] < with_leaf[0]
