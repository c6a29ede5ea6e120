"""Every shipped Slurm preset starts: its run config, DeepSpeed config and world size (nodes x GPUs per node)
reconcile, its memory plan fits the GPU, and its steps cover the card's epochs — checked here, not after a week in
the queue for 32 GPUs. Adding a preset adds a case."""
import shlex
from pathlib import Path

import pytest

from megatron_nexa.cluster_plan import Cluster, ZeroSettings, default_zero, plan
from megatron_nexa.config import load_config
from megatron_nexa.engine.ds_config import load_ds_config, reconcile, zero_stage
from tests.conftest import REPO

PRESETS = sorted((REPO / "slurm/presets").glob("*.env"))
H100_GIB = 80.0


def preset_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            key, value = line.split("=", 1)
            env[key] = " ".join(shlex.split(value))
    return env


def test_the_production_presets_are_covered():
    names = {p.stem for p in PRESETS if "CONFIG" in preset_env(p)}
    assert {"pilot_3b", "nexa_7b"} <= names


@pytest.mark.parametrize("preset", [p for p in PRESETS if "CONFIG" in preset_env(p)], ids=lambda p: p.stem)
def test_every_preset_starts(preset):
    check_preset(preset)


def check_preset(preset: Path) -> None:
    """The preset's run config and DeepSpeed config reconcile at its world size, fit an H100, cover 3 epochs."""
    env = preset_env(preset)
    world = int(env["NODES"]) * int(env["GPUS_PER_NODE"])
    cfg = load_config(REPO / env["CONFIG"], shlex.split(env.get("EXTRA_ARGS", "")))
    ds, cfg = reconcile(load_ds_config(REPO / env["DS_CONFIG"]), cfg, world, source=env["DS_CONFIG"])
    stage = zero_stage(ds)
    zero = {**default_zero(), stage: ZeroSettings.from_section(ds["zero_optimization"])}
    cluster = Cluster(gpus_per_node=int(env["GPUS_PER_NODE"]), nodes=int(env["NODES"]),
                      micro_batch=cfg.train.micro_batch_size, grad_accum=ds["gradient_accumulation_steps"],
                      gpu_memory_gib=H100_GIB, recompute=cfg.model.recompute, masked_fraction=cfg.masking.ratio_max,
                      zero=zero)
    p = plan(cfg.model, cluster)
    assert p["global_batch"] == cfg.train.global_batch_size
    memory = p["memory_gib"][stage]
    assert memory["fits"], f"{preset.stem}: {memory['total']:.1f} GiB per GPU at ZeRO-{stage} on an {H100_GIB:.0f} GiB GPU"
    assert cfg.train.train_steps == pytest.approx(p["total_steps"], rel=0.01), "train_steps cover the card's 3 epochs"


def test_a_larger_allocation_keeps_the_global_batch_and_says_how():
    """32 GPUs for the 7B: the card's global batch of 512 stays; the error names the micro-batch that gives it."""
    from megatron_nexa.config import ConfigError

    ds = load_ds_config(REPO / "ds_configs/zero3.json")
    with pytest.raises(ConfigError, match=r"on 32 ranks set --train.micro_batch_size=16"):
        reconcile(ds, load_config(REPO / "configs/pretrain_7b.yaml"), 32)
    ds, cfg = reconcile(ds, load_config(REPO / "configs/pretrain_7b.yaml", ["--train.micro_batch_size=16"]), 32)
    assert (ds["train_batch_size"], ds["gradient_accumulation_steps"]) == (512, 1)
