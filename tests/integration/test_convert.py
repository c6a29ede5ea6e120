"""ZeRO-3 checkpoint → PyTorch → Hugging Face → back; the HF model equals the training model; embed()."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from megatron_nexa.tokens import TokenType
from tests.conftest import MASSBANK_FILES, REPO

ENV = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}


def run(*args, env=ENV, check=True, cwd=REPO):
    out = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def trained(massbank, tmp_path_factory):
    """A tiny model after 2 steps of 2-process ZeRO-3 training on MassBank."""
    run_dir = tmp_path_factory.mktemp("convert") / "run"
    run("-m", "deepspeed.launcher.runner", "--num_gpus", "2", "--master_port", "29640", "pretrain_nexa.py",
        "--ds_config", "ds_configs/zero3_cpu.json", "--config", "configs/test_tiny.yaml",
        f"--data.sources=[{{path: {massbank}}}]", f"--train.run_dir={run_dir}", "--train.train_steps=2",
        "--train.eval_interval=2", "--train.save_interval=2")
    return run_dir


@pytest.fixture(scope="module")
def hf_dir(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("hf") / "hf"
    run("-m", "megatron_nexa.cli.convert", "to-hf", str(trained), str(out))
    return out


# Loads the export with deepspeed, megatron-core and megatron_nexa made unimportable.
HF_ONLY = textwrap.dedent("""
    import sys, importlib.abc, json, numpy as np, torch
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("deepspeed", "megatron", "megatron_nexa"):
                raise ImportError(name + " must not be needed by the export")
    sys.meta_path.insert(0, Block())
    from transformers import AutoModel, AutoModelForPreTraining
    model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    heads = AutoModelForPreTraining.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    inputs = [torch.from_numpy(a) for a in np.load(sys.argv[2]).values()]
    with torch.no_grad():
        out, pre = model(*inputs), heads(*inputs)
    np.savez(sys.argv[3], hidden=out.last_hidden_state.numpy(), cls=out.cls_embedding.numpy(),
             mz_logits=pre.mz_logits.numpy(), cls_mz_logits=pre.cls_mz_logits.numpy())
""")


def spectra_batch(massbank):
    from megatron_nexa.data.source import SpectraSource
    from megatron_nexa.data.tokenize import pair_row, single_row

    src = SpectraSource(massbank, "test")
    rows = [single_row(*src.peaks(i), float(src.precursor_mz[i]), 32) for i in range(12)]
    rows.append(pair_row((*src.peaks(0), 300.0), (*src.peaks(1), 250.0), 32))
    for row in rows[:4]:  # a few masked peaks, for the masked-peak head
        row.token_type[[3, 6]], row.mz[[3, 6]], row.intensity[[3, 6]] = TokenType.MASK, 0.0, 0.0
    return {f: np.stack([getattr(r, f) for r in rows]) for f in ("token_type", "mz", "intensity", "segment")}


def test_hf_export_equals_the_training_model(parallel, trained, hf_dir, massbank, tmp_path):
    from megatron_nexa.convert.state import load_state
    from megatron_nexa.model.encoder import NexaEncoder
    from megatron_nexa.model.pretraining import NexaSpecForPretraining

    run("-m", "megatron_nexa.cli.convert", "zero-to-torch", str(trained), str(tmp_path / "sd.safetensors"))
    state, cfg = load_state(tmp_path / "sd.safetensors")
    training = NexaSpecForPretraining(cfg, NexaEncoder(cfg)).eval()  # the megatron-core encoder
    missing, unexpected = training.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("_extra_state") for k in missing)
    batch = spectra_batch(massbank)
    np.savez(tmp_path / "in.npz", **batch)
    run("-c", HF_ONLY, str(hf_dir), str(tmp_path / "in.npz"), str(tmp_path / "out.npz"))
    hf = np.load(tmp_path / "out.npz")
    with torch.no_grad():
        ours = training(*[torch.from_numpy(batch[f]) for f in ("token_type", "mz", "intensity", "segment")])
    real = batch["token_type"] != 0
    assert np.abs(hf["cls"] - ours.cls.numpy()).max() <= 1e-5
    assert np.abs(hf["hidden"][real] - ours.hidden.numpy()[real]).max() <= 1e-5
    assert np.abs(ours.cls.numpy()).max() > 0.1  # not a trivially zero comparison
    assert len(ours.mz_logits) == (batch["token_type"] == TokenType.MASK).sum() > 0
    for head in ("mz_logits", "cls_mz_logits"):  # the masked-peak classifier on [MASK] tokens and on [CLS]
        assert np.abs(hf[head] - getattr(ours, head).numpy()).max() <= 1e-4


def test_round_trip_is_bit_identical(hf_dir, tmp_path):
    run("-m", "megatron_nexa.cli.convert", "from-hf", str(hf_dir), str(tmp_path / "back.safetensors"))
    run("-m", "megatron_nexa.cli.convert", "to-hf", str(tmp_path / "back.safetensors"), str(tmp_path / "hf2"))
    for name in ("model.safetensors", "config.json", "modeling_nexa.py", "configuration_nexa.py", "README.md",
                 "processing_nexa.py", "preprocessor_config.json"):
        assert (tmp_path / "hf2" / name).read_bytes() == (hf_dir / name).read_bytes(), name
    card = (hf_dir / "README.md").read_text()
    assert "## Training configuration" in card and "val_masked_mz_acc" in card
    assert json.loads((hf_dir / "config.json").read_text())["preprocessing"]["top_k"] == 256


def test_one_checkpoints_directory_exports_that_step(trained, hf_dir, tmp_path):
    """``to-hf runs/x/checkpoints/step_N`` is step N, what a user passes to export a checkpoint that is not the newest."""
    step = trained / "checkpoints" / "step_00000002"
    run("-m", "megatron_nexa.cli.convert", "to-hf", str(step), str(tmp_path / "hf"))
    assert (tmp_path / "hf/model.safetensors").read_bytes() == (hf_dir / "model.safetensors").read_bytes()
    out = run("-m", "megatron_nexa.cli.convert", "to-hf", str(step), str(tmp_path / "x"), "--tag", "step_00000001",
              check=False)
    assert out.returncode == 2 and "is checkpoint step_00000002, but --tag asks for step_00000001" in out.stderr


def test_sharded_export_loads(hf_dir, massbank, tmp_path):
    run("-m", "megatron_nexa.cli.convert", "from-hf", str(hf_dir), str(tmp_path / "sd.safetensors"))
    run("-m", "megatron_nexa.cli.convert", "to-hf", str(tmp_path / "sd.safetensors"), str(tmp_path / "sharded"),
        "--max-shard-size", "40KB")
    shards = sorted(p.name for p in (tmp_path / "sharded").glob("model-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "sharded/model.safetensors.index.json").exists()
    np.savez(tmp_path / "in.npz", **spectra_batch(massbank))
    run("-c", HF_ONLY, str(tmp_path / "sharded"), str(tmp_path / "in.npz"), str(tmp_path / "a.npz"))
    run("-c", HF_ONLY, str(hf_dir), str(tmp_path / "in.npz"), str(tmp_path / "b.npz"))
    assert np.array_equal(np.load(tmp_path / "a.npz")["cls"], np.load(tmp_path / "b.npz")["cls"])


def test_bad_checkpoints_get_clear_errors(hf_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    from megatron_nexa.convert.state import CheckpointMismatch, load_state

    run("-m", "megatron_nexa.cli.convert", "from-hf", str(hf_dir), str(tmp_path / "sd.safetensors"))
    state = load_file(str(tmp_path / "sd.safetensors"))
    state.pop("masked_peak.mz.weight")
    state["surprise.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "sd.safetensors"))
    with pytest.raises(CheckpointMismatch, match=r"missing keys: masked_peak\.mz\.weight.*unexpected keys: surprise\.weight"):
        load_state(tmp_path / "sd.safetensors")
    data = (tmp_path / "sd.safetensors").read_bytes()
    (tmp_path / "sd.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointMismatch, match="cannot be read"):
        load_state(tmp_path / "sd.safetensors")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    (tmp_path / "nexa_config.json").write_text((tmp_path / "nexa_config.json").read_text())
    with pytest.raises(CheckpointMismatch, match="cannot be read"):
        load_state(tmp_path / "evil.pt")  # weights_only=True refuses to unpickle objects
    out = run("-m", "megatron_nexa.cli.convert", "zero-to-torch", str(tmp_path), str(tmp_path / "x.pt"), check=False)
    assert out.returncode == 2 and "no 'latest' file" in out.stderr


def test_embed_api_on_massbank(hf_dir):
    import megatron_nexa
    from megatron_nexa.data.readers.mgf import read_mgf

    path = [f for f in MASSBANK_FILES if "CC0" in f][0]
    emb = megatron_nexa.embed(path, model=hf_dir, batch_size=128)
    n = sum(len(c) + len(r) for c, r in read_mgf(path, 100_000))
    assert emb.shape == (n, 32) and np.isfinite(emb).all()
    chunk, _ = next(read_mgf(path, 5))
    arrays = [(chunk.mz[i, :chunk.count[i]], chunk.intensity[i, :chunk.count[i]], chunk.precursor_mz[i]) for i in range(5)]
    from_arrays, peaks = megatron_nexa.embed(arrays, model=hf_dir, per_peak=True)
    np.testing.assert_allclose(from_arrays, emb[:5], atol=1e-6)
    assert peaks[0].shape == (min(chunk.count[0], 32), 32)
    mean = megatron_nexa.embed(arrays, model=hf_dir, pooling="mean")
    np.testing.assert_allclose(mean, np.stack([p.mean(0) for p in peaks]), atol=1e-5)
    assert not np.allclose(mean, from_arrays, atol=1e-3)
    from matchms import Spectrum

    spectra = [Spectrum(mz=np.asarray(m, float), intensities=np.asarray(i, float), metadata={"precursor_mz": float(p)})
               for m, i, p in arrays]
    np.testing.assert_allclose(megatron_nexa.embed(spectra, model=hf_dir), from_arrays, atol=1e-6)
    bad = [(np.array([-1.0]), np.array([1.0]), 100.0)] + arrays[:1]
    with pytest.warns(UserWarning, match="1 spectra could not be embedded") as caught:
        out = megatron_nexa.embed(bad, model=hf_dir)
    assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()
    with pytest.warns(UserWarning, match="1 spectra could not be embedded") as caught_pooled:
        megatron_nexa.inference.embed_pooled(bad, hf_dir)
    assert {w.filename for w in (*caught, *caught_pooled)} == {__file__}  # the warning points at the caller


def test_to_hf_outside_the_repository(trained, massbank, tmp_path):
    """A run launched with relative paths, exported from another directory: the preprocessing settings are found
    (also through zero-to-torch); without the data they are recorded as missing, loudly; --data supplies them."""
    import shutil

    import yaml

    launch, elsewhere = tmp_path / "launch", tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copytree(trained / "checkpoints", launch / "runs/r/checkpoints")
    (launch / "data").mkdir()
    (launch / "data/v").symlink_to(massbank)
    for config in (launch / "runs/r/checkpoints").glob("*/config.yaml"):
        run_cfg = yaml.safe_load(config.read_text())
        run_cfg["data"]["sources"], run_cfg["train"]["run_dir"] = [{"path": "data/v"}], "runs/r"
        config.write_text(yaml.safe_dump(run_cfg))

    def export(*extra):
        out = run("-m", "megatron_nexa.cli.convert", "to-hf", str(launch / "runs/r"), str(tmp_path / "hf"), *extra,
                  cwd=elsewhere)
        return json.loads((tmp_path / "hf/config.json").read_text()), out.stderr

    config, _ = export()
    assert config["preprocessing"]["top_k"] == 256 and "preprocessing_missing" not in config
    run("-m", "megatron_nexa.cli.convert", "zero-to-torch", str(launch / "runs/r"), str(tmp_path / "sd/m.safetensors"),
        cwd=elsewhere)
    run("-m", "megatron_nexa.cli.convert", "to-hf", str(tmp_path / "sd/m.safetensors"), str(tmp_path / "hf2"),
        cwd=elsewhere)
    assert json.loads((tmp_path / "hf2/config.json").read_text())["preprocessing"]["top_k"] == 256

    (launch / "data/v").unlink()
    config, err = export()
    assert config["preprocessing"] is None and "data/v" in config["preprocessing_missing"]
    assert "warning" in err and str(launch / "data/v/manifest.json") in err
    config, _ = export("--data", str(massbank))
    assert config["preprocessing"]["top_k"] == 256 and "preprocessing_missing" not in config


def test_hf_export_without_linear_biases(parallel, massbank, tmp_path):
    """``model.linear_bias: false`` (8 parameters a layer, not 12) survives the export: same outputs under HF."""
    from megatron_nexa.config import load_config
    from megatron_nexa.convert.to_hf import write_hf
    from megatron_nexa.model.encoder import NexaEncoder
    from megatron_nexa.model.layer_specs import canonical_state_dict
    from megatron_nexa.model.pretraining import NexaSpecForPretraining

    cfg = load_config(REPO / "configs/test_tiny.yaml", ["model.linear_bias=false"]).model
    torch.manual_seed(0)
    training = NexaSpecForPretraining(cfg, NexaEncoder(cfg)).eval()
    state = canonical_state_dict(training.state_dict())
    assert not any(k.endswith(("linear_qkv.bias", "linear_fc1.bias")) for k in state)
    write_hf(state, cfg, tmp_path / "hf")
    batch = spectra_batch(massbank)
    np.savez(tmp_path / "in.npz", **batch)
    run("-c", HF_ONLY, str(tmp_path / "hf"), str(tmp_path / "in.npz"), str(tmp_path / "out.npz"))
    hf = np.load(tmp_path / "out.npz")
    with torch.no_grad():
        ours = training(*[torch.from_numpy(batch[f]) for f in ("token_type", "mz", "intensity", "segment")])
    real = batch["token_type"] != 0
    assert np.abs(hf["hidden"][real] - ours.hidden.numpy()[real]).max() <= 1e-5
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["linear_bias"] is False
