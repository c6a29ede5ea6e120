"""The project's own sbatch script on a real two-"node" Slurm cluster: 2 nodes x 1 CPU task, the tiny
model on MassBank with 2 DataLoader workers a rank (Slurm signals them too); both ranks train, a checkpoint is
written, and a USR1 (pre-emption / time limit) makes the job save, requeue itself and resume from the checkpoint
until it finishes."""
import json
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.slurm_cluster import SlurmCluster, available

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))


@pytest.fixture
def cluster(tmp_path):
    c = SlurmCluster(tmp_path / "slurm").start()
    yield c
    c.stop()


def events(run_dir):
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_multinode_sbatch_trains_and_requeues(cluster, massbank, tmp_path):
    run_dir = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(f"base: {REPO / 'configs/test_tiny.yaml'}\ndata:\n  sources:\n    - path: {massbank}\n")
    env = {"CONFIG": str(config), "RUN_DIR": str(run_dir), "PYTHON": sys.executable,
           "EXTRA_ARGS": "--train.train_steps=60 --train.save_interval=5 --train.eval_interval=1000 --data.num_workers=2",
           "DS_ACCELERATOR": "cpu", "LOG_DIR": str(tmp_path / "logs")}
    job = int(subprocess.run(["bash", "slurm/submit.sh", "cpu_test", "--parsable"], cwd=REPO, check=True,
                             env={**cluster.env, **env}, capture_output=True, text=True).stdout.strip().split(";")[0])
    deadline = time.time() + 240
    while time.time() < deadline and not any(e.get("step", 0) >= 8 and "loss" in e for e in events(run_dir)):
        state = cluster.job(job).get("JobState")
        assert state in ("PENDING", "RUNNING", "CONFIGURING"), f"job {job} is {state}:\n{cluster.logs(job, tmp_path / 'logs')}"
        time.sleep(0.5)
    subprocess.run(["scancel", "--signal=USR1", str(job)], env=cluster.env, check=True)
    info = cluster.wait(job, timeout=400)
    log = "".join(p.read_text() for p in sorted((tmp_path / "logs").glob(f"nexa-cpu_test-{job}*")))
    assert info["JobState"] == "COMPLETED", cluster.logs(job, tmp_path / "logs")
    assert int(info.get("Restarts", 0)) >= 1, "the job did not requeue itself"
    all_events = events(run_dir)
    kinds = [e.get("event") for e in all_events]
    assert "preempted" in kinds and "resume" in kinds
    assert (run_dir / "DONE").read_text().strip() == "60"
    assert {p.name for p in (run_dir / "checkpoints/step_00000060").glob("rng_rank*.pt")} == {
        "rng_rank00000.pt", "rng_rank00001.pt"}, "both ranks trained and saved"
    assert (run_dir / "hostfile").read_text().split() == ["n1", "slots=1", "n2", "slots=1"]
    assert "requeueing job" in log and "training finished" in log
    # nexa-preflight ran on both tasks before each start's training step, and passed
    job_log = (tmp_path / "logs" / f"nexa-cpu_test-{job}.out").read_text()
    assert job_log.count("preflight passed") == int(info.get("Restarts", 0)) + 1, job_log
    assert job_log.index("preflight passed") < job_log.index("requeueing job")
    for rank in (0, 1):
        assert f"rank {rank}] PASS config: global batch 8 = micro-batch 4 x 2 rank(s)" in job_log, job_log
        assert f"rank {rank}] PASS data.sources[0]: {massbank}" in job_log, job_log
