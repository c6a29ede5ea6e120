import pytest

from megatron_nexa.config import ConfigError, Recompute, load_config
from megatron_nexa.engine.ds_config import load_ds_config, reconcile
from megatron_nexa.engine.optim import WarmupCosine, param_groups
from tests.conftest import REPO


def cfg(*o):
    return load_config(REPO / "configs/test_tiny.yaml", list(o))  # micro 4, global 8


def test_auto_values_are_filled_from_the_yaml():
    ds, c = reconcile(load_ds_config(REPO / "ds_configs/zero3.json"), cfg(), dp_size=2)
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"], ds["train_batch_size"]) == (4, 1, 8)
    assert ds["gradient_clipping"] == 1.0
    assert c.model.recompute == cfg().model.recompute  # the YAML decides recompute
    # a DeepSpeed-style activation_checkpointing section turns megatron's full recompute on
    ds, c = reconcile({**ds, "activation_checkpointing": {"partition_activations": False}}, cfg(), dp_size=2)
    assert "activation_checkpointing" not in ds and c.model.recompute == Recompute.FULL
    ds, _ = reconcile(load_ds_config(REPO / "ds_configs/zero3_cpu.json"), cfg(), dp_size=1)
    assert ds["gradient_accumulation_steps"] == 2


def test_throughput_timer_is_off_unless_asked_for():
    """DeepSpeed's default throughput timer synchronises the device at every forward and step."""
    ds, _ = reconcile(load_ds_config(REPO / "ds_configs/zero3.json"), cfg(), dp_size=2)
    assert ds["timers"] == {"throughput": {"enabled": False}}
    mine = {"throughput": {"enabled": True, "synchronized": False}}
    ds, _ = reconcile({**load_ds_config(REPO / "ds_configs/zero3.json"), "timers": mine}, cfg(), dp_size=2)
    assert ds["timers"] == mine


@pytest.mark.parametrize("ds, dp, message", [
    ({"train_micro_batch_size_per_gpu": 8}, 1, "train_micro_batch_size_per_gpu=8 disagrees with train.micro_batch_size=4"),
    ({"train_batch_size": 16}, 2, "train_batch_size=16 disagrees with train.global_batch_size=8"),
    ({"gradient_clipping": 0.5}, 1, "gradient_clipping=0.5 disagrees with optim.grad_clip=1.0"),
    ({}, 3, "not a multiple of micro_batch_size (4) x data-parallel size (3)"),
    ({"optimizer": {"type": "Adam"}}, 1, "remove the 'optimizer' section"),
    ({"scheduler": {"type": "WarmupLR"}}, 1, "remove the 'scheduler' section"),
])
def test_mismatches_are_errors(ds, dp, message):
    with pytest.raises(ConfigError) as err:
        reconcile(ds, cfg(), dp_size=dp)
    assert message in str(err.value)


def test_missing_or_broken_json(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_ds_config(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_ds_config(tmp_path / "bad.json")


def test_schedule_and_weight_decay_groups(parallel):
    import torch

    from megatron_nexa.model.encoder import NexaEncoder
    from megatron_nexa.model.pretraining import NexaSpecForPretraining

    c = cfg("optim.warmup_steps=10", "optim.lr=1.0", "optim.min_lr=0.1")
    model = NexaSpecForPretraining(c.model, NexaEncoder(c.model))
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim == 2 and "embedding" not in names[id(p)] for p in decay["params"])
    assert any("layernorm" in names[id(p)] for p in no_decay["params"])
    assert any(names[id(p)].endswith("bias") for p in no_decay["params"])
    assert any("encoder.embedding." in names[id(p)] and p.ndim == 2 for p in no_decay["params"])
    opt = torch.optim.AdamW(param_groups(model, 0.1))
    sched = WarmupCosine(opt, c.optim, total_steps=110)
    lrs = []
    for _ in range(110):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.45 * (1 + 0.0), abs=1e-9)  # halfway down the cosine
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    sched.lower(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    again = WarmupCosine(opt, c.optim, total_steps=110)
    again.load_state_dict(sched.state_dict())
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_a_bare_name_finds_the_shipped_config(tmp_path, monkeypatch):
    """``deepspeed pretrain_nexa.py --ds_config zero3.json``, as the usual command line has it, from any directory."""
    monkeypatch.chdir(tmp_path)
    assert load_ds_config("zero3.json") == load_ds_config(REPO / "ds_configs/zero3.json")
    assert load_ds_config("zero3_cpu") == load_ds_config(REPO / "ds_configs/zero3_cpu.json")
    with pytest.raises(ConfigError, match=r"DeepSpeed config not found: zero4.json \(shipped: .*zero3.json"):
        load_ds_config("zero4.json")
