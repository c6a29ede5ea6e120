"""pretrain_nexa.py started as users start it (plain python, torchrun, the deepspeed launcher) on the tiny config."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO

ENV = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def launch(massbank, run_dir, *extra, procs=2, port=29500, launcher="deepspeed", script="pretrain_nexa.py"):
    """The command line of a run: ``procs`` ranks under ``launcher`` ("deepspeed" or "torchrun"), or plain python."""
    if procs == 1:
        cmd = [sys.executable]
    elif launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs),
               "--master_addr", "127.0.0.1", "--master_port", str(port)]
    else:
        cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(procs), "--master_port", str(port)]
    return cmd + [script, "--ds_config", "ds_configs/zero3_cpu.json", "--config", "configs/test_tiny.yaml",
                  f"--data.sources=[{{path: {massbank}}}]", f"--train.run_dir={run_dir}", *extra]


def metrics(run_dir):
    lines = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    losses = {}
    for m in lines:  # a resumed run logs some steps again: the last value of each step counts
        if "loss" in m:
            losses[m["step"]] = m["loss"]
    return losses, [m for m in lines if "event" in m], lines


def wait_for_step(run_dir, step: int, proc=None, timeout: float = 240) -> None:
    """Until ``step``'s loss is logged; fails early if ``proc`` ends first."""
    path = Path(run_dir) / "metrics.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and any(json.loads(x).get("step", 0) >= step and "loss" in x
                                 for x in path.read_text().splitlines()):
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended (status {proc.returncode}) before step {step}")
        time.sleep(0.05)
    raise AssertionError(f"step {step} not reached in {timeout} s")


def finish(proc, timeout: float) -> str:
    """A job's output once it has ended; a job still running after ``timeout`` is killed (its whole process group)
    and the test fails with the end of what it printed."""
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out = proc.communicate()[0]
        raise AssertionError(f"the job hung: still running after {timeout} s; it printed:\n{out[-6000:]}") from None


def ranks(proc) -> dict:
    """A launched job's rank processes by LOCAL_RANK (their DataLoader workers, forked from them, are not ranks)."""
    import psutil

    found = {}
    for p in psutil.Process(proc.pid).children(recursive=True):
        local = p.environ().get("LOCAL_RANK")
        if local is not None and p.parent().environ().get("LOCAL_RANK") is None:
            found[int(local)] = p
    return found


__all__ = ["ENV", "REPO", "finish", "launch", "metrics", "ranks", "wait_for_step"]
