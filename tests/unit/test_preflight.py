"""nexa-preflight on CPU: a passing setup (the tiny model on MassBank, 2 ranks), and each FAIL: missing data, a corrupt
manifest or shard, an unwritable directory, too little disk (simulated), a version out of range, a batch mismatch.
The GPU checks say SKIP here, except the device and memory checks, run against a stand-in for this node's CUDA; the
NCCL part runs in benchmarks/gpu_check.sh (stage preflight) and on gloo here."""
import json
import shutil
from importlib.metadata import version

import pytest

from megatron_nexa import preflight as pf
from megatron_nexa.cli.preflight import main
from megatron_nexa.config import load_config
from megatron_nexa.engine.ds_config import load_ds_config
from megatron_nexa.plan import count_parameters
from tests.conftest import REPO

DS = str(REPO / "ds_configs/zero3_cpu.json")


def write_config(tmp_path, source, run_dir=None, **train):
    run_dir = run_dir or tmp_path / "run"
    lines = [f"base: {REPO / 'configs/test_tiny.yaml'}", "data:", "  sources:", f"    - path: {source}",
             "train:", f"  run_dir: {run_dir}"] + [f"  {k}: {v}" for k, v in train.items()]
    path = tmp_path / "run.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(capsys, config, *args, free_bytes=pf.free_bytes_at):
    code = main(["--config", str(config), "--ds_config", DS, "--world-size", "2", *args], free_bytes=free_bytes)
    out = capsys.readouterr().out
    return code, {line.split(":", 1)[0]: line for line in out.splitlines()}, out


@pytest.fixture
def version_copy(massbank, tmp_path):
    """A copy of the MassBank version, to damage."""
    return shutil.copytree(massbank, tmp_path / "massbank_v1")


def test_a_passing_setup(massbank, tmp_path, capsys):
    code, lines, out = run(capsys, write_config(tmp_path, massbank), "--log-dir", str(tmp_path / "logs"))
    assert code == 0, out
    for name in ("config", "data.sources[0]", "writable run", "writable checkpoints", "writable logs", "disk",
                 "torch", "deepspeed", "megatron-core"):
        assert f"PASS {name}" in lines, out
    assert "global batch 8 = micro-batch 4 x 2 rank(s) x accumulation 1; ZeRO-3, fp32" in lines["PASS config"]
    assert "SKIP bucket" in lines and "SKIP gpu" in lines  # no bucket named; no GPU here (and the NCCL part with it)
    assert (tmp_path / "run/checkpoints").is_dir() and not list((tmp_path / "run/checkpoints").iterdir())
    assert out.splitlines()[-1] == "preflight: ok (0 WARN)"


def test_offline_skips_the_gpu_checks_and_says_so(massbank, tmp_path, capsys):
    code, lines, out = run(capsys, write_config(tmp_path, massbank), "--offline")
    assert code == 0 and "--offline: GPU checks skipped" in lines["SKIP gpu"], out


def test_missing_data_fails(tmp_path, capsys):
    code, lines, out = run(capsys, write_config(tmp_path, tmp_path / "nowhere_v1"))
    assert code == 1
    assert "no manifest.json" in lines["FAIL data.sources[0]"] and "nexa-dataset sync" in lines["FAIL data.sources[0]"]
    assert out.splitlines()[-1] == "preflight: 1 FAIL, 0 WARN"


def test_a_corrupt_manifest_fails(version_copy, tmp_path, capsys):
    manifest = version_copy / "manifest.json"
    manifest.write_text(manifest.read_text()[:200])
    code, lines, out = run(capsys, write_config(tmp_path, version_copy))
    assert code == 1 and "unreadable, truncated or damaged" in lines["FAIL data.sources[0]"], out


def test_a_missing_split_fails(massbank, tmp_path, capsys):
    config = write_config(tmp_path, massbank)
    code, lines, out = run(capsys, config, "--data.valid_split=holdout")
    assert code == 1 and "no split 'holdout'" in lines["FAIL data.sources[0]"], out


def test_the_quick_verify_checks_sizes_of_all_and_checksums_of_a_sample(version_copy, tmp_path):
    m = json.loads((version_copy / "manifest.json").read_text())
    shards = m["shards"]["train"]
    assert len(shards) >= 3, "several shards a split, so a sample is a part"
    cfg = load_config(write_config(tmp_path, version_copy))
    # a byte flipped in every train shard's peaks: the sampled shards' checksums catch it, sizes do not change
    for s in shards:
        path = version_copy / "shards/train" / f"{s['name']}.bin"
        data = bytearray(path.read_bytes())
        data[0] ^= 0xFF
        path.write_bytes(bytes(data))
    [check] = pf.check_sources(cfg, sample=1)
    assert check.status == pf.FAIL and "1 problem(s)" in check.message and "sha256" in check.message
    [check] = pf.check_sources(cfg, full=True)
    assert check.status == pf.FAIL and f"{len(shards)} problem(s)" in check.message
    # a truncated shard outside any sample: its size is checked all the same
    path = version_copy / "shards/val" / f"{m['shards']['val'][-1]['name']}.idx"
    path.write_bytes(path.read_bytes()[:-8])
    problems = pf.quick_verify(str(version_copy), sample=0)
    assert any(p.startswith(f"shards/val/{m['shards']['val'][-1]['name']}.idx") and "bytes" in p for p in problems)


def test_an_unwritable_directory_fails(massbank, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory\n")  # fails as root too, where permissions do not
    code, lines, out = run(capsys, write_config(tmp_path, massbank, run_dir=blocker / "run"))
    assert code == 1 and "point it at a writable filesystem" in lines["FAIL writable run"], out


def test_too_little_disk_fails(massbank, tmp_path, capsys):
    code, lines, out = run(capsys, write_config(tmp_path, massbank), free_bytes=lambda path: 10 * 2**20)
    assert code == 1, out
    assert "4 more checkpoint(s) (keep_last 3 + 1 being written, 0 already there)" in lines["FAIL disk"]


def test_the_disk_check_counts_the_checkpoints_already_there(massbank, tmp_path):
    cfg = load_config(write_config(tmp_path, massbank))
    ds = load_ds_config(DS)
    one = pf.checkpoint_bytes(count_parameters(cfg.model).total, 3, bf16=False)
    for step in (3, 6):
        (tmp_path / f"run/checkpoints/step_{step:08d}").mkdir(parents=True)
        (tmp_path / f"run/checkpoints/step_{step:08d}/COMPLETE").write_text("2\n")
    exactly = 2 * one + pf.LOG_BYTES  # keep_last 3 + 1 being written, 2 there
    assert pf.check_disk(cfg, ds, free_bytes=lambda p: exactly).status == pf.PASS
    check = pf.check_disk(cfg, ds, free_bytes=lambda p: exactly - 1)
    assert check.status == pf.FAIL and "2 already there" in check.message


def test_checkpoint_size_by_precision_and_stage():
    assert pf.checkpoint_bytes(1000, 3, bf16=True) == 14_000  # bf16 params, fp32 master and two moments
    assert pf.checkpoint_bytes(1000, 1, bf16=False) == 16_000  # fp32 params, ZeRO's fp32 partition, moments
    assert pf.checkpoint_bytes(1000, 0, bf16=False) == 12_000


def test_a_version_out_of_range_fails(monkeypatch):
    old = {"deepspeed": "0.18.5"}
    checks = {c.name: c for c in pf.check_versions(installed=lambda p: old.get(p) or version(p))}
    assert checks["deepspeed"].status == pf.FAIL and ">=0.19,<0.20" in checks["deepspeed"].message
    assert checks["torch"].status == checks["megatron-core"].status == pf.PASS
    monkeypatch.setenv("NEXA_ALLOW_UNTESTED_VERSIONS", "1")
    checks = {c.name: c for c in pf.check_versions(installed=lambda p: old.get(p) or version(p))}
    assert checks["deepspeed"].status == pf.WARN


def test_the_ranges_checked_are_the_compat_seams_own():
    from megatron_nexa.compat import deepspeed, megatron
    from megatron_nexa.compat import torch as compat_torch

    assert pf.supported_ranges() == {"torch": compat_torch.SUPPORTED, "deepspeed": deepspeed.SUPPORTED,
                                     "megatron-core": megatron.SUPPORTED}


def test_a_batch_mismatch_fails(massbank, tmp_path, capsys):
    config = write_config(tmp_path, massbank)
    code = main(["--config", str(config), "--ds_config", DS, "--world-size", "4"])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("FAIL config"))
    assert code == 1 and "on 4 ranks set --train.micro_batch_size=2" in line
    ds = json.loads((REPO / DS).read_text())
    ds["train_batch_size"] = 16
    (tmp_path / "ds.json").write_text(json.dumps(ds))
    code = main(["--config", str(config), "--ds_config", str(tmp_path / "ds.json"), "--world-size", "2"])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("FAIL config"))
    assert code == 1 and "train_batch_size=16 disagrees with train.global_batch_size=8" in line


def test_the_world_size_comes_from_slurm(massbank, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    main(["--config", str(write_config(tmp_path, massbank)), "--ds_config", DS])
    assert "on 4 ranks" in capsys.readouterr().out


def test_a_bucket_is_reachable_or_fails():
    import fsspec

    fsspec.filesystem("memory").pipe("/nexa-bucket/processed/x", b"1")
    assert pf.check_bucket(None, ["memory://nexa-bucket/processed"])[0].status == pf.PASS
    [check] = pf.check_bucket(None, ["memory://no-such-bucket/processed"])
    assert check.status == pf.FAIL and "not found" in check.message


def test_bus_bandwidth_and_the_fabric_verdict():
    # nccl-tests' arithmetic: 1 GB all-reduced over 16 ranks in 10 ms moves 2 x 15/16 of it: 187.5 GB/s
    assert pf.bus_bandwidth("all_reduce", 10**9, 16, 0.01) == pytest.approx(187.5)
    assert pf.bus_bandwidth("all_gather", 10**9, 16, 0.01) == pytest.approx(93.75)
    assert pf.judge("nccl", 45.0, 40.0, "InfiniBand").status == pf.PASS
    assert pf.judge("nccl", 28.0, 40.0, "InfiniBand").status == pf.WARN
    tcp = pf.judge("nccl", 3.0, 40.0, "InfiniBand")  # InfiniBand fallen back to TCP
    assert tcp.status == pf.FAIL and "NCCL_DEBUG=INFO" in tcp.message and "40 GB/s expected" in tcp.message


def _collectives(rank, world, nodes, port, out):
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        checks = pf.check_collectives(pf.Layout(world, nodes), nbytes=2**16, device="cpu")
    finally:
        dist.destroy_process_group()
    if rank == 0:
        out.put([(c.status, c.name, c.message) for c in checks])


@pytest.mark.parametrize("nodes", [1, 2])
def test_the_collective_check_runs_on_every_rank(nodes):
    """The NCCL check's code on gloo (2 ranks: one node of 2, or 2 nodes of 1): which lines, not how fast."""
    import multiprocessing as mp
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_collectives, args=(r, 2, nodes, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    checks = out.get(timeout=120)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    where = "intra-node" if nodes == 1 else "inter-node"
    assert [name for _, name, _ in checks] == [f"nccl all_reduce {where}", f"nccl all_gather {where}"]
    assert all(status in (pf.PASS, pf.WARN, pf.FAIL) and "GB/s bus bandwidth" in msg for status, _, msg in checks)


@pytest.fixture
def fake_gpus(monkeypatch):
    """This node's CUDA as the preflight reads it (count, name, memory, versions): CI has no GPU."""
    import types

    import torch

    def install(count: int, gib: float, name: str = "NVIDIA H100 80GB HBM3"):
        props = types.SimpleNamespace(name=name, total_memory=int(gib * 2**30))
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
        monkeypatch.setattr(torch.version, "cuda", "12.8")
        monkeypatch.setattr(torch.cuda.nccl, "version", lambda: (2, 27, 3))
    return install


def test_the_gpu_checks_against_the_plan(fake_gpus):
    """16 H100s for the 3B pilot fit; 8 GPUs for 16 ranks a node, or the 7B's micro-batch on 80 GB, do not."""
    ds = load_ds_config(str(REPO / "ds_configs/zero3.json"))
    pilot = load_config(REPO / "configs/pretrain_3b.yaml")
    fake_gpus(16, 79.6)
    assert pf.check_cuda().line() == "PASS cuda: CUDA 12.8, NCCL 2.27.3, 16 GPU(s) visible"
    checks = pf.check_gpus(pilot, ds, pf.Layout(16, 1), local_rank=3)
    assert [c.status for c in checks] == [pf.PASS, pf.PASS], [c.line() for c in checks]
    assert "NVIDIA H100 80GB HBM3 79.6 GiB; the plan's peak at ZeRO-3 is" in checks[1].line()
    fake_gpus(8, 79.6)
    (few,) = pf.check_gpus(pilot, ds, pf.Layout(16, 1))
    assert few.status == pf.FAIL and "8 GPU(s) visible, 16 rank(s) a node" in few.line()
    big = load_config(REPO / "configs/pretrain_7b.yaml", ["train.micro_batch_size=64", "train.global_batch_size=512"])
    fake_gpus(8, 79.6)
    checks = pf.check_gpus(big, ds, pf.Layout(8, 1))
    assert checks[-1].status == pf.FAIL and "over 90 %: lower train.micro_batch_size" in checks[-1].line()
