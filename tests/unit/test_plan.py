import subprocess
import sys

import pytest

from megatron_nexa.config import load_config
from megatron_nexa.plan import count_parameters, transformer_parameters_formula
from tests.conftest import REPO


@pytest.mark.parametrize("name, linear_bias", [("tiny", True), ("small", True), ("tiny", False)])
def test_meta_count_equals_real_megatron_model(parallel, name, linear_bias):
    from megatron_nexa.model.encoder import NexaEncoder
    from megatron_nexa.model.pretraining import NexaSpecForPretraining

    cfg = load_config(REPO / f"configs/model/{name}.yaml", [f"model.linear_bias={str(linear_bias).lower()}"]).model
    real = NexaSpecForPretraining(cfg, NexaEncoder(cfg))
    count = count_parameters(cfg)
    assert count.total == sum(p.numel() for p in real.parameters())
    assert count.transformer == sum(p.numel() for p in real.encoder.transformer.parameters())
    assert count.transformer == transformer_parameters_formula(cfg)


@pytest.mark.parametrize("name, low, high", [("nexa_3b", 2.2e9, 2.4e9), ("nexa_7b", 6.7e9, 6.9e9)])
def test_card_sizes_and_cli(name, low, high):
    cfg = load_config(REPO / f"configs/model/{name}.yaml").model
    count = count_parameters(cfg)
    assert count.transformer == transformer_parameters_formula(cfg)
    assert low < count.total < high
    out = subprocess.run([sys.executable, "-m", "megatron_nexa.cli.plan", "--model",
                          str(REPO / f"configs/model/{name}.yaml")], capture_output=True, text=True, check=True).stdout
    assert f"{count.total:,d}" in out
