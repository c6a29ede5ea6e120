"""``gpu_step.no_gather_waits_without_sync`` (the ``zero3_nogathersync`` variants) drops the host sync in
DeepSpeed's one-rank 'gather' handles: the parameters it marks available must be the ones DeepSpeed would, so
a ZeRO-3 engine that partitions every parameter trains to the same losses, and DeepSpeed's ``wait`` comes back."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DRIVER = """
import json, sys
from benchmarks.gpu_step import no_gather_waits_without_sync
from benchmarks.train_step import engine_step, synthetic_batch
from deepspeed.runtime.zero import partition_parameters as pp
from megatron_nexa.config import load_config
from megatron_nexa.engine.setup import build
original = pp.NoGatherHandle.wait, pp.NoGatherCoalescedHandle.wait
restore = no_gather_waits_without_sync() if sys.argv[2] == "patched" else (lambda: None)
in_use, calls = (pp.NoGatherHandle.wait, pp.NoGatherCoalescedHandle.wait), []
for cls, wait in zip((pp.NoGatherHandle, pp.NoGatherCoalescedHandle), in_use):
    def counted(self, _wait=wait, **kwargs):
        calls.append(1)
        return _wait(self, **kwargs)
    cls.wait = counted
built = build(load_config("configs/model/tiny.yaml"), sys.argv[1])
batch = synthetic_batch(built.cfg, built.cfg.train.micro_batch_size)
losses = [engine_step(built, batch).item() for _ in range(4)]
pp.NoGatherHandle.wait, pp.NoGatherCoalescedHandle.wait = in_use
restore()
print(json.dumps({"losses": losses, "waits": len(calls), "patched": in_use != original,
                  "restored": (pp.NoGatherHandle.wait, pp.NoGatherCoalescedHandle.wait) == original}))
"""


def run(tmp_path, mode: str) -> dict:
    ds = json.loads((REPO / "ds_configs/zero3.json").read_text())
    ds["zero_optimization"]["stage3_param_persistence_threshold"] = 0  # every tiny parameter is partitioned
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(ds))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    out = subprocess.run([sys.executable, "-c", DRIVER, str(path), mode], cwd=REPO, capture_output=True, text=True,
                         env={**env, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_same_losses_without_the_no_gather_sync(tmp_path):
    plain, patched = run(tmp_path, "deepspeed"), run(tmp_path, "patched")
    assert plain["waits"] > 0 and patched["waits"] == plain["waits"], (plain, patched)  # the handles were used
    assert patched["patched"] and patched["restored"] and not plain["patched"]
    assert patched["losses"] == plain["losses"] and patched["losses"][-1] < patched["losses"][0], (plain, patched)
