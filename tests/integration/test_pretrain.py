"""pretrain_nexa.py for real: the deepspeed launcher, 2 CPU processes, ZeRO-3, the MassBank shards."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import REPO
from tests.training_runs import ENV, launch, metrics, wait_for_step

# As real runs are: dropout on (resume must restore its RNG exactly), DataLoader worker processes.
REALISTIC = ("--model.hidden_dropout=0.1", "--model.attention_dropout=0.1", "--data.num_workers=2")


@pytest.fixture(scope="module")
def uninterrupted(massbank, tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "full"
    out = subprocess.run(launch(massbank, run, "--train.train_steps=8", "--train.save_interval=2", *REALISTIC,
                                port=29611),
                         cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return run, out.stdout


def test_two_process_zero3_run(uninterrupted):
    run, stdout = uninterrupted
    losses, events, lines = metrics(run)
    assert sorted(losses) == list(range(1, 9))
    assert "one_rank_fetch" not in {e["event"] for e in events}  # two ranks: DeepSpeed's real all-gather
    assert "Process" in stdout and stdout.count("exits successfully") == 2
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("step_*"))
    assert ckpts == ["step_00000004", "step_00000006", "step_00000008"]  # keep_last 3
    assert (run / "checkpoints/latest").read_text().strip() == "step_00000008"
    assert (run / "checkpoints/step_00000008/config.yaml").exists()
    assert {f.name for f in (run / "checkpoints/step_00000008").glob("rng_rank*.pt")} == {"rng_rank00000.pt",
                                                                                          "rng_rank00001.pt"}
    assert any("val_masked_mz" in m for m in lines) and any("val_prior_masked_mz_acc" in m for m in lines)
    assert all(-1 <= m["val_cls_mean_cosine"] <= 1 for m in lines if "val_masked_mz" in m)
    first = next(m for m in lines if "loss" in m)
    for key in ("masked_mz", "masked_mz_acc", "retention_order", "lr", "grad_norm", "embedding_variance",
                "tokens_per_s", "step_time"):
        assert key in first, key
    assert all(isinstance(m["grad_norm"], float) for m in lines if "loss" in m)  # a number, not a tensor's text


def test_resume_after_sigkill_gives_the_same_losses(massbank, uninterrupted, tmp_path):
    """kill -9 of the whole job mid-run; the rerun resumes bit-exactly, dropout and DataLoader workers included."""
    full, _, _ = metrics(uninterrupted[0])
    run = tmp_path / "killed"
    args = ("--train.train_steps=8", "--train.save_interval=2", *REALISTIC)
    proc = subprocess.Popen(launch(massbank, run, *args, port=29612), cwd=REPO, env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_step(run, 5, proc)  # after the step-4 checkpoint
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial, _, _ = metrics(run)
    assert max(partial) < 8, "the run finished before it could be killed"
    out = subprocess.run(launch(massbank, run, *args, port=29613), cwd=REPO, env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    resumed, events, _ = metrics(run)
    assert any(e["event"] == "resume" for e in events)
    assert sorted(resumed) == list(range(1, 9))
    for step in range(1, 9):
        assert resumed[step] == pytest.approx(full[step], rel=1e-6, abs=1e-6), step


def test_sigterm_saves_and_exits_cleanly_and_a_second_trainer_is_refused(massbank, tmp_path):
    run = tmp_path / "term"
    args = ("--train.train_steps=1000", "--train.save_interval=1000", "--train.eval_interval=1000",
            "--data.num_workers=2")
    proc = subprocess.Popen(launch(massbank, run, *args, procs=1), cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    wait_for_step(run, 3, proc)
    second = subprocess.run(launch(massbank, run, *args, procs=1), cwd=REPO, env=ENV, capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 2, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"{run} is in use by another trainer (pid {proc.pid} on " in second.stderr
    assert "Traceback" not in second.stderr
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    _, events, _ = metrics(run)
    assert [e["event"] for e in events][-2:] == ["checkpoint", "preempted"]
    assert events[0]["event"] == "one_rank_fetch"  # one process: DeepSpeed's per-module fetch sync skipped
    assert sum(e["event"] == "one_rank_fetch" for e in events) == 1, "the refused trainer wrote nothing"
    step = events[-1]["step"]
    assert 3 <= step < 1000
    assert (run / "checkpoints/latest").read_text().strip() == f"step_{step:08d}"


DRIVER = textwrap.dedent("""
    import json, sys, torch
    from megatron_nexa.config import load_config
    from megatron_nexa.engine.trainer import Trainer, TrainingAborted
    cfg = load_config("configs/test_tiny.yaml", sys.argv[2:])
    trainer = Trainer(cfg, "ds_configs/zero3_cpu.json")
    mode = sys.argv[1]
    if mode == "spike":
        for loss in (1.0, 1.1, 0.9, 1.0, 5.0, 1.0):
            trainer._after_step(True, loss)
        print(json.dumps({"bad_steps": trainer.state.bad_steps, "ema": trainer.state.loss_ema}))
    elif mode == "overfit":
        batch = next(iter(__import__("megatron_nexa.data.loader", fromlist=["x"]).build_loader(
            trainer.train_set, trainer.cfg, 0, 1)))
        steps = [trainer._micro_step(batch) for _ in range(2 * 40)][1::2]  # accum 2: one update per 2
        print(json.dumps({"losses": [t["loss"] for t in steps], "ro": [t.get("retention_order") for t in steps],
                          "ro_rows": int((batch.ro_group >= 0).sum()), "joined": int(batch.is_pair.sum())}))
    else:
        poison = {int(s) for s in mode.split(",")}
        original = trainer._micro_step
        def micro(batch):
            if trainer.state.step + 1 in poison:
                batch.intensity[:] = float("nan")
            return original(batch)
        trainer._micro_step = micro
        try:
            trainer.train()
            print(json.dumps({"done": trainer.state.step, "lr": trainer.built.scheduler.get_last_lr()[0]}))
        except TrainingAborted as e:
            print(json.dumps({"aborted": str(e)}))
    trainer.close()
""")


def drive(massbank, run_dir, mode, *extra):
    out = subprocess.run([sys.executable, "-c", DRIVER, mode, f"data.sources=[{{path: {massbank}}}]",
                          f"train.run_dir={run_dir}", *extra], cwd=REPO, env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_loss_goes_down_on_a_fixed_batch(massbank, tmp_path):
    losses = drive(massbank, tmp_path / "fit", "overfit", "optim.warmup_steps=0", "optim.lr=3e-3",
                   "train.train_steps=1000")["losses"]
    assert losses[-1] < 0.5 * losses[0], losses


def test_separate_pairs_train_retention_order_through_zero3(massbank, tmp_path):
    result = drive(massbank, tmp_path / "ro", "overfit", "optim.warmup_steps=0", "optim.lr=3e-3",
                   "train.train_steps=1000", "data.pair_input=separate", "data.pair_fraction=0.5")
    assert result["ro_rows"] >= 2 and result["joined"] == 0, result
    ro = result["ro"]
    assert ro[0] == pytest.approx(0.693, abs=0.05) and ro[-1] < 0.5 * ro[0], ro


def test_nan_steps_are_skipped_logged_and_lower_the_lr(massbank, tmp_path):
    result = drive(massbank, tmp_path / "nan", "3", "train.train_steps=6", "optim.warmup_steps=0",
                   "optim.lr=1e-3", "optim.min_lr=1e-3")
    assert result["done"] == 6 and result["lr"] == pytest.approx(5e-4)
    losses, events, _ = metrics(tmp_path / "nan")
    skipped = [e for e in events if e["event"] == "skipped_step"]
    assert len(skipped) == 1 and skipped[0]["step"] == 3
    assert all(v == v for s, v in losses.items() if s != 3), "training goes on with finite losses"
    aborted = drive(massbank, tmp_path / "nan2", "2,3,4", "train.train_steps=6", "train.max_bad_steps=3")
    assert "3 consecutive non-finite steps at step 4" in aborted["aborted"]


def test_torchrun_launch(massbank, tmp_path):
    """torchrun, with each layer compiled (``train.compile``, as configs/pretrain_3b.yaml ships) between ZeRO-3's
    real two-rank all-gathers."""
    run = tmp_path / "torchrun"
    cmd = launch(massbank, run, "--train.train_steps=2", "--train.eval_interval=2", "--train.save_interval=2",
                 "--train.compile=true", launcher="torchrun", port=29614)
    out = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    losses, _, _ = metrics(run)
    assert sorted(losses) == [1, 2]
    assert (run / "checkpoints/step_00000002/rng_rank00001.pt").exists()


def test_local_launcher_script(massbank, tmp_path):
    """slurm/launch.sh: the same run outside Slurm (torchrun here; deepspeed --hostfile with HOSTFILE)."""
    config = tmp_path / "run.yaml"
    config.write_text(f"base: {REPO / 'configs/test_tiny.yaml'}\ndata:\n  sources:\n    - path: {massbank}\n")
    run = tmp_path / "local"
    out = subprocess.run(["bash", "slurm/launch.sh", str(config), "ds_configs/zero3_cpu.json", "--train.train_steps=2",
                          f"--train.run_dir={run}", "--train.eval_interval=2", "--train.save_interval=2"],
                         cwd=REPO, env={**ENV, "GPUS": "2", "PATH": f"{sys.executable.rsplit('/', 1)[0]}:{os.environ['PATH']}"},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (run / "DONE").exists() and (run / "checkpoints/step_00000002/rng_rank00001.pt").exists()


def test_loss_spikes_are_logged(massbank, tmp_path):
    result = drive(massbank, tmp_path / "spike", "spike", "train.spike_factor=3.0")
    assert result["bad_steps"] == 0
    _, events, _ = metrics(tmp_path / "spike")
    spikes = [e for e in events if e["event"] == "loss_spike"]
    assert len(spikes) == 1 and "loss 5.0000 > 3.0 x running mean" in spikes[0]["message"]
