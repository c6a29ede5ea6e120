"""The export finds the training data's preprocessing settings from wherever it runs, or records why not."""
import json

import pytest
import yaml

SETTINGS = {"top_k": 99, "min_peaks": 3}


def make_run(root, run_dir="runs/r", data="data/v", manifest_at="data/v"):
    """A run launched from ``root`` with relative paths; returns its checkpoints directory."""
    ckpt = root / run_dir / "checkpoints"
    (ckpt / "step_2").mkdir(parents=True)
    (ckpt / "step_2/config.yaml").write_text(yaml.safe_dump(
        {"model": {}, "data": {"sources": [{"path": data}]}, "train": {"run_dir": run_dir}}))
    if manifest_at:
        (root / manifest_at).mkdir(parents=True)
        (root / manifest_at / "manifest.json").write_text(json.dumps({"settings": SETTINGS}))
    return ckpt


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")


def test_relative_data_path_resolves_against_the_launch_directory(tmp_path, elsewhere):
    from megatron_nexa.convert.run_context import read_run_context

    ctx = read_run_context(make_run(tmp_path / "repo"), "step_2")
    assert ctx.preprocessing == SETTINGS and ctx.preprocessing_missing is None


def test_a_moved_run_finds_the_data_beside_a_parent(tmp_path, elsewhere):
    from megatron_nexa.convert.run_context import read_run_context

    ckpt = make_run(tmp_path / "repo", run_dir="runs/r")
    moved = tmp_path / "repo" / "archive" / "r"
    moved.parent.mkdir()
    (tmp_path / "repo/runs/r").rename(moved)
    assert read_run_context(moved / "checkpoints", "step_2").preprocessing == SETTINGS
    assert not ckpt.exists()


def test_missing_settings_are_recorded_with_the_paths_tried(tmp_path, elsewhere):
    from megatron_nexa.convert.run_context import read_run_context

    ctx = read_run_context(make_run(tmp_path / "repo", manifest_at=None), "step_2")
    assert ctx.preprocessing is None
    why = ctx.preprocessing_missing
    assert "data/v" in why and str(tmp_path / "repo/data/v/manifest.json") in why
    assert "--data" in ctx.preprocessing_missing


def test_data_given_explicitly_wins(tmp_path, elsewhere):
    from megatron_nexa.convert.run_context import dataset_settings, read_run_context

    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"settings": {"top_k": 7}}))
    ctx = read_run_context(make_run(tmp_path / "repo", manifest_at=None), "step_2", data=str(other))
    assert ctx.preprocessing == {"top_k": 7} and ctx.preprocessing_missing is None
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        dataset_settings(str(tmp_path / "nowhere"))


def test_export_records_missing_settings_instead_of_an_empty_dict(tmp_path):
    from megatron_nexa.config import ModelConfig
    from megatron_nexa.convert.to_hf import hf_config_dict

    d = hf_config_dict(ModelConfig(), None, "not found: data/v")
    assert d["preprocessing"] is None and d["preprocessing_missing"] == "not found: data/v"
    assert "preprocessing_missing" not in hf_config_dict(ModelConfig(), SETTINGS)


def test_a_checkpoint_is_found_from_the_run_its_checkpoints_or_its_own_directory(tmp_path):
    from megatron_nexa.convert.zero_to_torch import locate_checkpoint

    ckpts = tmp_path / "run" / "checkpoints"
    for step in ("step_00000500", "step_00001000"):
        (ckpts / step).mkdir(parents=True)
        (ckpts / step / "config.yaml").write_text("model: {}\n")
    (ckpts / "latest").write_text("step_00001000")
    assert locate_checkpoint(tmp_path / "run", None) == (ckpts, "step_00001000")
    assert locate_checkpoint(ckpts, "step_00000500") == (ckpts, "step_00000500")
    assert locate_checkpoint(ckpts / "step_00000500", None) == (ckpts, "step_00000500")
    with pytest.raises(ValueError, match="is checkpoint step_00000500, but --tag asks for step_00001000"):
        locate_checkpoint(ckpts / "step_00000500", "step_00001000")
    (ckpts / "latest").unlink()
    with pytest.raises(FileNotFoundError, match=r"pass --tag \(one of \['step_00000500', 'step_00001000'\]\)"):
        locate_checkpoint(ckpts, None)
    with pytest.raises(FileNotFoundError, match="not a run, its checkpoints/ or a checkpoint directory"):
        locate_checkpoint(tmp_path, None)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        locate_checkpoint(tmp_path / "nope", None)
    with pytest.raises(FileNotFoundError, match="no checkpoint step_00000999; its checkpoints: step_00000500, step_00001000"):
        locate_checkpoint(tmp_path / "run", "step_00000999")


def test_an_earlier_checkpoints_export_carries_that_steps_metrics(tmp_path):
    from megatron_nexa.convert.run_context import checkpoint_metrics

    lines = [{"step": 50, "loss": 3.0}, {"step": 500, "val_masked_mz": 5.0, "time": 1.0},
             {"step": 1000, "val_masked_mz": 4.0}, {"step": 1500, "val_masked_mz": 3.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert checkpoint_metrics(tmp_path / "metrics.jsonl", "step_00001000") == {"step": 1000, "val_masked_mz": 4.0}
    assert checkpoint_metrics(tmp_path / "metrics.jsonl", "step_00000700") == {"step": 500, "val_masked_mz": 5.0}
    assert checkpoint_metrics(tmp_path / "metrics.jsonl", "step_00000100") is None
    assert checkpoint_metrics(tmp_path / "metrics.jsonl", "my_tag")["step"] == 1500  # not a step: the last
    assert checkpoint_metrics(tmp_path / "missing.jsonl", "step_00001000") is None


def test_the_model_card_names_the_objectives_the_run_trained():
    from megatron_nexa.config import load_config
    from megatron_nexa.convert.to_hf import model_card
    from tests.conftest import REPO

    cfg = load_config(REPO / "configs/model/tiny.yaml").model
    card = model_card(cfg, "loss:\n  contrastive: 1.0\n  retention_order: 0.0\n", {"step": 500, "val_masked_mz": 4.0})
    assert "pretrained with masked peak modelling and contrastive views (InfoNCE) by megatron_nexa" in card
    assert "The run's last evaluation up to the exported checkpoint, made at step 500." in card
    assert "pretrained with masked peak modelling and retention-order prediction by" in model_card(cfg, None, None)
