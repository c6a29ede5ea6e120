"""nexa-finetune's learning rates: the head warms up and decays over the run; the encoder is at 0 while
frozen, then warms up from its unfreeze step and decays to the same fraction at the last step."""
from types import SimpleNamespace

import pytest

from megatron_nexa.finetune.config import FinetuneConfig
from megatron_nexa.finetune.train import Finetuner


def lrs(cfg: FinetuneConfig) -> list[tuple[float, float]]:
    groups = [{"lr": None}, {"lr": None}]
    fake = SimpleNamespace(cfg=cfg, engine=SimpleNamespace(optimizer=SimpleNamespace(param_groups=groups)))
    out = []
    for step in range(cfg.steps):
        Finetuner.set_lrs(fake, step)
        out.append((groups[0]["lr"], groups[1]["lr"]))
    return out


def test_constant_by_default_and_encoder_frozen_until_unfreeze():
    cfg = FinetuneConfig(init="x", data="y", steps=10, lr=1e-3, encoder_lr=5e-5, unfreeze_after=4).validate()
    got = lrs(cfg)
    assert all(head == 1e-3 for head, _ in got)
    assert [enc for _, enc in got] == [0.0] * 4 + [5e-5] * 6


def test_warmup_then_cosine_for_head_and_encoder():
    cfg = FinetuneConfig(init="x", data="y", steps=100, lr=1e-3, encoder_lr=1e-4, unfreeze_after=20,
                         warmup_steps=10, final_lr_fraction=0.1).validate()
    got = lrs(cfg)
    assert got[0][0] == pytest.approx(1e-4) and got[9][0] == pytest.approx(1e-3)  # head warm-up
    assert got[19][1] == 0.0 and got[20][1] == pytest.approx(1e-5) and got[29][1] == pytest.approx(1e-4)
    heads = [h for h, _ in got[10:]]
    assert all(a >= b for a, b in zip(heads, heads[1:]))  # decays monotonically
    assert got[-1][0] == pytest.approx(1e-4, rel=0.01) and got[-1][1] == pytest.approx(1e-5, rel=0.05)


def test_bad_schedule_settings_are_refused():
    from megatron_nexa.config import ConfigError

    with pytest.raises(ConfigError, match="final_lr_fraction"):
        FinetuneConfig(init="x", data="y", final_lr_fraction=1.5).validate()
    with pytest.raises(ConfigError, match="warmup_steps"):
        FinetuneConfig(init="x", data="y", warmup_steps=-1).validate()
