"""``compat.deepspeed.OneRankFetch``: a one-rank ZeRO-3 engine fetches its parameters without DeepSpeed's host sync.
``build`` installs it; the parameters it marks available must be the ones DeepSpeed would, so an engine that
partitions every parameter trains to the same losses with DeepSpeed's own ``wait`` put back."""
import json
import subprocess
import sys

from tests.conftest import REPO, child_env, zero3_every_parameter_partitioned

DRIVER = """
import json, sys
from megatron_nexa.testing import engine_step, synthetic_batch
from deepspeed.runtime.zero import partition_parameters as pp
from megatron_nexa.config import load_config
from megatron_nexa.compat.deepspeed import OneRankFetch as one_rank_fetch
from megatron_nexa.engine.setup import build
made = []
no_gather = pp._no_gather_coalesced
pp._no_gather_coalesced = lambda params: made.append(1) or no_gather(params)
built = build(load_config("configs/model/tiny.yaml"), sys.argv[1])
installed_by_build = one_rank_fetch.installed()
if sys.argv[2] == "deepspeed":
    one_rank_fetch.uninstall()
batch = synthetic_batch(built.cfg, built.cfg.train.micro_batch_size)
losses = [engine_step(built, batch).item() for _ in range(4)]
print(json.dumps({"losses": losses, "handles": len(made), "installed_by_build": installed_by_build,
                  "installed": one_rank_fetch.installed()}))
"""


def run(tmp_path, mode: str) -> dict:
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(zero3_every_parameter_partitioned()))
    out = subprocess.run([sys.executable, "-c", DRIVER, str(path), mode], cwd=REPO, capture_output=True, text=True,
                         env=child_env(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1"), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_same_losses_as_deepspeeds_own_fetch(tmp_path):
    ours, deepspeed = run(tmp_path, "ours"), run(tmp_path, "deepspeed")
    assert ours["installed_by_build"] and deepspeed["installed_by_build"]
    assert ours["installed"] and not deepspeed["installed"]  # uninstall puts DeepSpeed's wait back
    assert ours["handles"] > 0 and ours["handles"] == deepspeed["handles"], (ours, deepspeed)  # no-gather path used
    assert ours["losses"] == deepspeed["losses"] and ours["losses"][-1] < ours["losses"][0], (ours, deepspeed)
