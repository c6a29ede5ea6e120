"""Faults a long job meets, tried the way they happen: an error on one of two ranks, a DataLoader worker killed,
pre-emption signals through each launcher with worker processes, a kill at each moment of a save, a lost
``latest``, a truncated checkpoint, a missing data path. Every run has dropout on and DataLoader workers."""
import os
import shutil
import signal
import subprocess
import time

import psutil
import pytest

from tests.training_runs import ENV, REPO, finish, launch, metrics, ranks, wait_for_step

REALISTIC = ("--model.hidden_dropout=0.1", "--model.attention_dropout=0.1", "--data.num_workers=2")
RUN = ("--train.train_steps=6", "--train.save_interval=2", "--train.eval_interval=1000", *REALISTIC)

# pretrain_nexa.main with one fault injected (FAULT=kind:where:step), so the real entry point and launchers run it.
INJECT = """
import os, signal, sys
sys.path.insert(0, os.getcwd())
import torch.distributed as dist
import pretrain_nexa
from megatron_nexa.data.source import DataError
from megatron_nexa.engine import checkpoint, monitor, trainer

kind, where, step = os.environ["FAULT"].split(":")
step = int(step)
if kind in ("raise", "report"):  # a DataError on rank `where` in step `step`, the other rank in its collectives
    micro = trainer.Trainer._micro_step
    def failing(self, batch):
        if dist.get_rank() == int(where) and self.state.step + 1 == step:
            raise DataError("shard_00003.bin: spectrum 17 (index 9120 of massbank) has a non-finite m/z")
        return micro(self, batch)
    trainer.Trainer._micro_step = failing
if kind == "report":  # and a second exception while the first is reported, as a signal handler can raise anywhere
    event = monitor.Monitor.event
    def failing_event(self, at, what, message):
        if what == "failed":
            raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed.")
        return event(self, at, what, message)
    monitor.Monitor.event = failing_event
if kind == "kill":  # SIGKILL inside step `step`'s save, just before `where` is written
    tag = f"step_{step:08d}"
    if where == "rng":  # DeepSpeed's files written, nothing of ours yet
        rng_state = checkpoint._rng_state
        def killing_rng():
            if (checkpoint.Path(os.environ["RUN_DIR"]) / "checkpoints" / tag).exists():
                os.kill(os.getpid(), signal.SIGKILL)
            return rng_state()
        checkpoint._rng_state = killing_rng
    else:
        write = checkpoint.atomic_write_text
        def killing_write(path, text):
            if path.name == where and (tag in str(path) or text.strip() == tag):
                os.kill(os.getpid(), signal.SIGKILL)
            return write(path, text)
        checkpoint.atomic_write_text = killing_write
sys.exit(pretrain_nexa.main())
"""


@pytest.fixture(scope="module")
def inject(tmp_path_factory):
    path = tmp_path_factory.mktemp("inject") / "inject.py"
    path.write_text(INJECT)
    return str(path)


@pytest.fixture(scope="module")
def reference(massbank, tmp_path_factory):
    """One process, 6 steps, checkpoints at 2, 4 and 6: the losses every recovered run must reproduce exactly."""
    run = tmp_path_factory.mktemp("reference") / "run"
    out = subprocess.run(launch(massbank, run, *RUN, procs=1), cwd=REPO, env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return run, metrics(run)[0]


def resumed_from(run):
    return [e["message"].split()[1] for e in metrics(run)[1] if e["event"] == "resume"]


def finish_and_compare(massbank, run, reference_losses):
    out = subprocess.run(launch(massbank, run, *RUN, procs=1), cwd=REPO, env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    losses, events, _ = metrics(run)
    assert set(reference_losses) <= set(losses) and max(losses) == 6
    for step, loss in reference_losses.items():
        assert losses[step] == pytest.approx(loss, rel=1e-6, abs=1e-6), step
    return out, events


# --- 1. an exception on one rank; a DataLoader worker killed -------------------------------------------------

def test_an_error_on_one_rank_ends_the_whole_job_promptly(massbank, inject, tmp_path):
    """torchrun, 2 ranks: rank 1 raises in step 3 while rank 0 waits in ZeRO-3's all-gather."""
    run = tmp_path / "run"
    start = time.time()
    out = subprocess.run(launch(massbank, run, *RUN, launcher="torchrun", port=29631, script=inject), cwd=REPO,
                         env={**ENV, "FAULT": "raise:1:3"}, capture_output=True, text=True, timeout=240)
    assert out.returncode != 0
    assert time.time() - start < 180, "the job hung instead of ending"
    assert ("pretrain_nexa: rank 1: shard_00003.bin: spectrum 17 (index 9120 of massbank) has a non-finite m/z"
            in out.stderr), out.stderr[-3000:]
    assert max(metrics(run)[0]) == 2


def test_a_killed_dataloader_worker_ends_the_whole_job_promptly(massbank, tmp_path):
    """The deepspeed launcher, 2 ranks with 2 workers each; one worker of rank 1 is killed."""
    run = tmp_path / "run"
    proc = subprocess.Popen(launch(massbank, run, "--train.train_steps=1000", "--train.save_interval=1000",
                                   "--train.eval_interval=1000", *REALISTIC, port=29632),
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        wait_for_step(run, 2, proc)
        start = time.time()
        ranks(proc)[1].children()[0].kill()
        out = finish(proc, 180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert time.time() - start < 120, "the job hung instead of ending"
    assert "pretrain_nexa: rank 1:" in out and "DataLoader worker" in out, out[-3000:]


def test_an_exception_while_a_failure_is_reported_still_ends_the_job(massbank, inject, tmp_path):
    """The deepspeed launcher, 2 ranks with 2 workers each: rank 1 fails in step 3, and reporting it raises again, so
    an exception reaches the top of the rank while its DataLoader workers (which ignore SIGTERM) are alive."""
    run = tmp_path / "run"
    start = time.time()
    proc = subprocess.Popen(launch(massbank, run, *RUN, port=29630, script=inject), cwd=REPO,
                            env={**ENV, "FAULT": "report:1:3"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    out = finish(proc, 240)
    assert proc.returncode != 0
    assert time.time() - start < 180, "the job hung instead of ending"
    assert "pretrain_nexa: rank 1: shard_00003.bin" in out and "[rank1]: RuntimeError: DataLoader worker" in out, \
        out[-3000:]


# --- 2. pre-emption with DataLoader workers, through each launcher ------------------------------------------

@pytest.mark.parametrize("launcher, target", [("torchrun", "launcher"), ("torchrun", "rank group"),
                                              ("deepspeed", "job group"), ("python", "ctrl-c")])
def test_sigterm_with_dataloader_workers_saves_a_checkpoint(massbank, tmp_path, launcher, target):
    """SIGTERM as each launcher or scheduler delivers it: to torchrun (which signals every rank's process group),
    to one rank's process group, or to the whole job's group (a terminal, a batch system); and Ctrl-C (SIGINT to
    the terminal's process group). The DataLoader workers receive the signal too."""
    run = tmp_path / "run"
    procs = 1 if launcher == "python" else 2
    proc = subprocess.Popen(launch(massbank, run, "--train.train_steps=1000", "--train.save_interval=1000",
                                   "--train.eval_interval=1000", *REALISTIC, launcher=launcher, procs=procs,
                                   port=29633 + len(target)),
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        wait_for_step(run, 3, proc)
        by_rank = ranks(proc) if procs == 2 else {0: psutil.Process(proc.pid)}
        assert len(by_rank) == procs and all(len(r.children()) == 2 for r in by_rank.values()), "2 workers a rank"
        if target == "launcher":
            proc.send_signal(signal.SIGTERM)
        elif target == "rank group":
            os.killpg(os.getpgid(by_rank[1].pid), signal.SIGTERM)
        elif target == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.killpg(proc.pid, signal.SIGTERM)
        out = finish(proc, 120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    _, events, _ = metrics(run)
    assert [e["event"] for e in events][-2:] == ["checkpoint", "preempted"], out[-3000:]
    step = events[-1]["step"]
    assert (run / "checkpoints" / f"step_{step:08d}" / "COMPLETE").exists()
    assert len(list((run / "checkpoints" / f"step_{step:08d}").glob("rng_rank*"))) == procs
    if launcher == "python":
        assert proc.returncode == 0


# --- 3-5. checkpoints: a kill at each moment of a save, a lost `latest`, a truncated file ---------------------

@pytest.mark.parametrize("where, resumes_from", [("rng", "step_00000002"), ("files.json", "step_00000002"),
                                                 ("COMPLETE", "step_00000002"), ("latest", "step_00000004")])
def test_a_kill_inside_a_save_loses_no_completed_work(massbank, inject, reference, tmp_path, where, resumes_from):
    run = tmp_path / "run"
    killed = subprocess.run(launch(massbank, run, *RUN, procs=1, script=inject), cwd=REPO,
                            env={**ENV, "FAULT": f"kill:{where}:4", "RUN_DIR": str(run)}, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-2000:]
    _, events = finish_and_compare(massbank, run, reference[1])
    assert resumed_from(run) == [resumes_from]
    if where == "latest":  # step 4 was complete, `latest` still named step 2
        assert any(e["event"] == "warning" and "newest complete checkpoint is step_00000004" in e["message"]
                   for e in events)


def test_a_missing_latest_resumes_from_the_newest_complete_checkpoint(massbank, reference, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference[0], run)
    for stale in ("DONE", "metrics.jsonl", "checkpoints/latest"):
        (run / stale).unlink()
    shutil.rmtree(run / "checkpoints/step_00000006")  # as if stopped after the step-4 save
    _, events = finish_and_compare(massbank, run, {5: reference[1][5], 6: reference[1][6]})
    assert resumed_from(run) == ["step_00000004"]
    assert any(e["event"] == "warning" and "latest is missing; the newest complete checkpoint is step_00000004" in e["message"] for e in events)


def test_a_truncated_checkpoint_is_named_set_aside_and_the_one_before_it_used(massbank, reference, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference[0], run)
    (run / "DONE").unlink()
    (run / "metrics.jsonl").unlink()
    shard = run / "checkpoints/step_00000006/zero_pp_rank_0_mp_rank_00_optim_states.pt"
    shard.write_bytes(shard.read_bytes()[:1000])
    out, events = finish_and_compare(massbank, run, {5: reference[1][5], 6: reference[1][6]})
    assert resumed_from(run) == ["step_00000004"]
    warning = next(e["message"] for e in events if e["event"] == "warning")
    assert f"{shard} has 1,000 bytes" in warning and "truncated" in warning
    assert (run / "checkpoints/rejected/step_00000006").is_dir()


def test_no_sound_checkpoint_refuses_to_start_and_keeps_them(massbank, reference, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference[0], run)
    (run / "DONE").unlink()
    for tag in ("step_00000002", "step_00000004", "step_00000006"):
        shard = run / "checkpoints" / tag / "zero_pp_rank_0_mp_rank_00_model_states.pt"
        shard.write_bytes(b"")
    out = subprocess.run(launch(massbank, run, *RUN, procs=1), cwd=REPO, env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert "no checkpoint in" in out.stderr and "step_00000002: " in out.stderr and "Traceback" not in out.stderr
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == [
        "step_00000002", "step_00000004", "step_00000006"], "nothing deleted or moved"


# --- 7. config errors before DeepSpeed starts ----------------------------------------------------------------

def test_a_missing_data_path_is_a_config_error_before_anything_starts(tmp_path):
    run = tmp_path / "never"
    out = subprocess.run(launch(tmp_path / "no_such_dataset", run, procs=1), cwd=REPO, env=ENV, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("pretrain_nexa: rank 0: config error: data.sources[0].path: "), out.stderr[-2000:]
    assert "no_such_dataset is not a readable dataset version" in out.stderr and "Traceback" not in out.stderr
    assert not run.exists(), "no run directory for a run that never started"
    assert "DeepSpeed" not in out.stdout + out.stderr
