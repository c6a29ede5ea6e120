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

ENV = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def launch(massbank, run_dir, *extra, procs=2, port=29500):
    cmd = ([sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(procs), "--master_port", str(port)]
           if procs > 1 else [sys.executable])
    return cmd + ["pretrain_nexa.py", "--ds_config", "ds_configs/zero3_cpu.json", "--config", "configs/test_tiny.yaml",
                  f"--data.sources=[{{path: {massbank}}}]", f"--train.run_dir={run_dir}", *extra]


def metrics(run_dir):
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = {}
    for m in lines:  # a resumed run logs some steps again: the last value of each step counts
        if "loss" in m:
            losses[m["step"]] = m["loss"]
    return losses, [m for m in lines if "event" in m], lines


@pytest.fixture(scope="module")
def uninterrupted(massbank, tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "full"
    out = subprocess.run(launch(massbank, run, "--train.train_steps=8", "--train.save_interval=2", port=29611),
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
    first = next(m for m in lines if "loss" in m)
    for key in ("masked_mz", "masked_mz_acc", "retention_order", "lr", "grad_norm", "embedding_variance",
                "tokens_per_s", "step_time"):
        assert key in first, key
    assert all(isinstance(m["grad_norm"], float) for m in lines if "loss" in m)  # a number, not a tensor's text


def test_resume_after_sigkill_gives_the_same_losses(massbank, uninterrupted, tmp_path):
    full, _, _ = metrics(uninterrupted[0])
    run = tmp_path / "killed"
    proc = subprocess.Popen(launch(massbank, run, "--train.train_steps=8", "--train.save_interval=2", port=29612),
                            cwd=REPO, env=ENV, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill -9 once step 5 is logged (after the step-4 checkpoint)
        if (run / "metrics.jsonl").exists() and any(
                json.loads(x).get("step", 0) >= 5 for x in (run / "metrics.jsonl").read_text().splitlines()):
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial, _, _ = metrics(run)
    assert max(partial) < 8, "the run finished before it could be killed"
    out = subprocess.run(launch(massbank, run, "--train.train_steps=8", "--train.save_interval=2", port=29613),
                         cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    resumed, events, _ = metrics(run)
    assert any(e["event"] == "resume" for e in events)
    assert sorted(resumed) == list(range(1, 9))
    for step in range(1, 9):
        assert resumed[step] == pytest.approx(full[step], rel=1e-6, abs=1e-6), step


def test_sigterm_saves_and_exits_cleanly(massbank, tmp_path):
    run = tmp_path / "term"
    proc = subprocess.Popen(launch(massbank, run, "--train.train_steps=1000", "--train.save_interval=1000",
                                   "--train.eval_interval=1000", procs=1),
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((run / "metrics.jsonl").exists()
                                          and (run / "metrics.jsonl").read_text().count('"loss"') >= 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    _, events, _ = metrics(run)
    assert [e["event"] for e in events][-2:] == ["checkpoint", "preempted"]
    assert events[0]["event"] == "one_rank_fetch"  # one process: DeepSpeed's per-module fetch sync skipped
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
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *launch(massbank, run, "--train.train_steps=2", "--train.eval_interval=2", "--train.save_interval=2",
                   "--train.compile=true", procs=1)[1:]]
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
