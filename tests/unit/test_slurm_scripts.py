"""The Slurm scripts' own logic, with stand-ins for srun, sbatch and scontrol that record how they were called (the
real Slurm runs in tests/integration/test_slurm.py): the preflight opt-outs, and submitting a preset by its path."""
import os
import stat
import subprocess

import pytest

from tests.conftest import REPO

RECORDER = """#!/bin/bash
args="$*"
echo "$(basename "$0") ${args//$'\n'/ }" >> "$CALLS"
if [ "$(basename "$0")" = sbatch ]; then echo "env CONFIG=$CONFIG DS_CONFIG=$DS_CONFIG EXTRA_ARGS=${EXTRA_ARGS:-}" >> "$CALLS"; fi
if [ "$(basename "$0") $1 $2" = "scontrol show hostnames" ]; then echo node1; fi
if [ "$(basename "$0") $1 $2" = "scontrol show node" ]; then echo "NodeName=node1 NodeAddr=127.0.0.1"; fi
exit 0
"""


@pytest.fixture
def stubs(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("srun", "sbatch", "scontrol"):
        (bin_dir / name).write_text(RECORDER)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "REPO": str(REPO),
           "SLURM_JOB_ID": "7", "SLURM_NTASKS": "2", "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "node[1-2]",
           "CONFIG": "configs/test_tiny.yaml", "RUN_DIR": str(tmp_path / "run"), "LOG_DIR": str(tmp_path / "logs")}
    return env, calls


def run_sbatch(env, *args):
    out = subprocess.run(["bash", str(REPO / "slurm/nexa.sbatch"), *args], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.parametrize("how", ["SKIP_PREFLIGHT=1", "--skip-preflight in EXTRA_ARGS", "--skip-preflight argument"])
def test_each_opt_out_skips_the_preflight_and_keeps_the_training_step(stubs, how):
    env, calls = stubs
    args = []
    if how.startswith("SKIP"):
        env["SKIP_PREFLIGHT"] = "1"
    elif "EXTRA_ARGS" in how:
        env["EXTRA_ARGS"] = "--optim.lr=1e-4 --skip-preflight"
    else:
        args = ["--skip-preflight"]
    out = run_sbatch(env, *args)
    assert "preflight skipped" in out, out
    sruns = [line for line in calls.read_text().splitlines() if line.startswith("srun")]
    assert len(sruns) == 1 and "pretrain_nexa.py" in sruns[0] and "megatron_nexa.cli.preflight" not in sruns[0]
    assert "--skip-preflight" not in sruns[0]  # the trainer never sees the opt-out
    if "EXTRA_ARGS" in how:
        assert "--optim.lr=1e-4" in sruns[0]


def test_without_an_opt_out_the_preflight_runs_first(stubs):
    env, calls = stubs
    out = run_sbatch(env)
    assert "preflight passed" in out, out
    sruns = [line for line in calls.read_text().splitlines() if line.startswith("srun")]
    assert len(sruns) == 2 and "megatron_nexa.cli.preflight" in sruns[0] and "pretrain_nexa.py" in sruns[1]


def test_submit_takes_a_preset_file_by_its_path(stubs, tmp_path):
    env, calls = stubs
    preset = tmp_path / "pretrain_7b_4x8.env"
    preset.write_text("NODES=4\nGPUS_PER_NODE=8\nTIME=7-00:00:00\nCONFIG=configs/pretrain_7b.yaml\n"
                      f"DS_CONFIG={tmp_path / 'zero3.json'}\nRUN_DIR=runs/x\nEXTRA_ARGS=--train.micro_batch_size=16\n")
    out = subprocess.run(["bash", str(REPO / "slurm/submit.sh"), str(preset)], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    recorded = calls.read_text()
    assert "--job-name=nexa-pretrain_7b_4x8 --nodes=4 --ntasks-per-node=8" in recorded, recorded
    assert "CONFIG=configs/pretrain_7b.yaml" in recorded and "EXTRA_ARGS=--train.micro_batch_size=16" in recorded
    missing = subprocess.run(["bash", str(REPO / "slurm/submit.sh"), str(tmp_path / "none.env")], env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no preset file" in missing.stderr
