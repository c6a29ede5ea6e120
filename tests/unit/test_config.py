import pytest

from megatron_nexa.config import (AttentionBackend, ConfigError, RunConfig, load_config,
                                  model_config_from_dict, parse_overrides)
from tests.conftest import REPO

MODELS = REPO / "configs/model"


@pytest.mark.parametrize("name", ["tiny", "small", "nexa_3b", "nexa_7b"])
def test_shipped_configs_load(name):
    cfg = load_config(MODELS / f"{name}.yaml")
    assert cfg.model.local_window == 64 or name == "tiny"
    assert cfg.optim.beta1 == 0.9 and cfg.optim.beta2 == 0.95 and cfg.optim.weight_decay == 0.1


def test_card_shapes():
    c3, c7 = load_config(MODELS / "nexa_3b.yaml"), load_config(MODELS / "nexa_7b.yaml")
    assert (c3.model.num_layers, c3.model.hidden_size, c3.model.ffn_hidden_size, c3.model.num_attention_heads) == (36, 2304, 9216, 32)
    assert (c7.model.num_layers, c7.model.hidden_size, c7.model.ffn_hidden_size, c7.model.num_attention_heads) == (60, 3072, 12288, 48)
    for c in (c3, c7):
        assert c.model.max_peaks == 256 and c.model.mz_bins == 4096 and c.model.local_window == 64
        assert 5000 <= c.optim.warmup_steps <= 10000
        assert c.train.global_batch_size == 512 and c.train.micro_batch_size == 32
    assert c3.optim.lr == 1.5e-4 and c7.optim.lr == 1.2e-4


@pytest.mark.parametrize("override, message", [
    (["model.hidden_size=100", "model.num_attention_heads=3"], "model.hidden_size: 100 is not divisible by num_attention_heads=3"),
    (["model.local_window=0"], "model.local_window: must be >= 1"),
    (["masking.ratio_min=0"], "masking.ratio_min: mask ratio must be in (0, 1)"),
    (["masking.ratio_max=1.5"], "masking.ratio_max: mask ratio must be in (0, 1)"),
    (["masking.ratio_min=0.4", "masking.ratio_max=0.2"], "masking.ratio_min: ratio_min=0.4 exceeds ratio_max=0.2"),
    (["model.hiden_size=64"], "model.hiden_size: unknown key (did you mean 'hidden_size'?)"),
    (["nonsense.x=1"], "nonsense: unknown key"),
    (["model.num_layers=two"], "model.num_layers: expected an integer, got 'two'"),
    (["model.attention_backend=flash"], "model.attention_backend: 'flash' is not one of ['sdpa', 'local']"),
    (["optim.lr=-1"], "optim.lr: must be > 0"),
    (["train.global_batch_size=10", "train.micro_batch_size=4"], "train.global_batch_size: 10 is not a multiple"),
    (["model.mz_min=3000"], "model.mz_min: need 0 <= mz_min < mz_max"),
])
def test_bad_configs_name_the_field(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(MODELS / "tiny.yaml", override)
    assert message in str(err.value)
    assert str(err.value).startswith("command line '"), "the value came from the command line, not the YAML"


def test_errors_name_where_the_value_came_from(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"base: {MODELS / 'tiny.yaml'}\noptim:\n  lr: -1\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad, ["train.train_steps=5"])
    assert str(err.value).startswith(f"{bad} with command-line overrides 'train.train_steps=5': optim.lr: must be > 0")
    with pytest.raises(ConfigError) as err:  # the override that set the bad value is named, as the user typed it
        load_config(bad, ["--optim.lr=0", "train.train_steps=5"])
    assert str(err.value).startswith("command line '--optim.lr=0': optim.lr: must be > 0")
    with pytest.raises(ConfigError) as err:
        load_config(MODELS / "tiny.yaml", ["data.sources=[{path: ''}]"])
    assert str(err.value).startswith("command line \"data.sources=[{path: ''}]\": data.sources[0].path: is empty")
    cfg = load_config(MODELS / "tiny.yaml", ["--train.run_dir=@runs/x"])  # not YAML: taken as typed
    assert cfg.train.run_dir == "@runs/x"
    with pytest.raises(ConfigError) as err:
        load_config(MODELS / "tiny.yaml", ["--data.sources=[{path: x"])
    assert str(err.value).startswith("command line '--data.sources=[{path: x': data.sources: expected a list")
    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(tmp_path / "broken.yaml")


def test_overrides_and_round_trip(tmp_path):
    cfg = load_config(MODELS / "small.yaml", ["--model.num_layers=3", "optim.lr=2e-4", "model.attention_backend=local"])
    assert cfg.model.num_layers == 3 and cfg.optim.lr == 2e-4 and cfg.model.attention_backend is AttentionBackend.LOCAL
    cfg.save(tmp_path / "run.yaml")
    assert load_config(tmp_path / "run.yaml") == cfg


def test_base_inheritance(tmp_path):
    (tmp_path / "run.yaml").write_text(f"base: {MODELS / 'tiny.yaml'}\ntrain:\n  train_steps: 7\n")
    cfg = load_config(tmp_path / "run.yaml")
    assert cfg.train.train_steps == 7 and cfg.model.hidden_size == 32


def test_missing_file_and_bad_override():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent.yaml")
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_overrides(["model.num_layers"])


def test_model_section_alone():
    cfg = model_config_from_dict(RunConfig().to_dict()["model"])
    assert cfg == RunConfig().model
    with pytest.raises(ConfigError, match="model.bogus"):
        model_config_from_dict({"bogus": 1})


RUN_CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("name", RUN_CONFIGS)
def test_every_run_config_loads_and_a_make_target_builds_its_data(name):
    """A shipped run config validates, and each dataset version it reads under data_out/ is one the Makefile
    writes (``--name N --version V``), so ``make`` can make what the config needs."""
    import re

    cfg = load_config(REPO / "configs" / name)
    cfg.validate()
    makefile = (REPO / "Makefile").read_text()
    built = {f"data_out/{n}_v{v}" for n, v in re.findall(r"--name (\S+) --version (\d+)", makefile)}
    for source in cfg.data.sources:
        if source.path.startswith("data_out/"):
            assert source.path in built, f"{name}: {source.path} is made by no make target"
