"""nexa-finetune and nexa-eval on a user error: one line on stderr naming the path and what is wrong, exit 2, no
traceback; and before anything heavy is loaded: each command runs here with torch, DeepSpeed, transformers,
megatron-core and pyarrow made unimportable, so a check that came after loading them would end in an ImportError."""
import json
import os
import subprocess
import sys
from dataclasses import asdict

import pytest

from megatron_nexa.data.manifest import Manifest
from tests.conftest import REPO

HEAVY = ("torch", "deepspeed", "transformers", "megatron", "pyarrow")


@pytest.fixture(scope="module")
def blocked(tmp_path_factory):
    """A folder to put first on PYTHONPATH whose packages named in HEAVY refuse to be imported."""
    root = tmp_path_factory.mktemp("blocked")
    for name in HEAVY:
        (root / name).mkdir()
        refusal = f"raise ImportError('{name} imported before the inputs were checked')\n"
        (root / name / "__init__.py").write_text(refusal)
    return root


def run(blocked, module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(blocked), "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", f"megatron_nexa.cli.{module}", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def one_line_error(out: subprocess.CompletedProcess, prog: str, *words: str) -> str:
    err = out.stderr.strip()
    assert out.returncode == 2 and "Traceback" not in err, err[-3000:]
    assert "\n" not in err and err.startswith(f"{prog}: error: "), err[-3000:]
    for word in words:
        assert word in err, err
    return err


def export(folder, model_type="nexa_spec", code=True):
    """What the checks look at of a Hugging Face export (the files, not their contents)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    (folder / "model.safetensors").write_bytes(b"")
    for name in ("configuration_nexa.py", "modeling_nexa.py") if code else ():
        (folder / name).write_text("")
    return folder


def version(folder, splits=("train", "val", "test")):
    """A dataset version's manifest with ``splits`` (no shards: the checks read only the manifest)."""
    folder.mkdir(parents=True)
    m = Manifest(name="x", version=1, tool_version="0", settings={}, split_rule={}, inputs=[], counts={},
                 shards={s: [] for s in splits}, rejects={})
    (folder / "manifest.json").write_text(json.dumps(asdict(m)))
    return folder


def finetune_config(tmp_path, **values):
    path = tmp_path / "ft.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in {"task": "fingerprint", "out_dir": tmp_path / "out",
                                                         **values}.items()))
    return str(path)


# --- nexa-finetune ---------------------------------------------------------------------------------------------

def test_finetune_without_the_init_folder(blocked, tmp_path):
    """The shipped configs name hf/demo, which exists only after ``make eval``."""
    config = finetune_config(tmp_path, init=tmp_path / "hf/demo", data=version(tmp_path / "data"))
    err = one_line_error(run(blocked, "finetune", "--config", config), "nexa-finetune",
                         f"init {tmp_path / 'hf/demo'}: no such folder", "nexa-convert to-hf")
    assert err.startswith(f"nexa-finetune: error: {config}: ")  # where the value came from


@pytest.mark.parametrize("case, words", [
    ("init is an empty folder", ["init {tmp}/empty: not a Hugging Face export (no config.json"]),
    ("init is another model", ["init {tmp}/bert: config.json has model_type 'bert', not 'nexa_spec'"]),
    ("init has no weights", ["init {tmp}/hf/demo: no weights (model.safetensors or model.safetensors.index.json)"]),
    ("init given on the command line", ["command line '--init={tmp}/nowhere': init {tmp}/nowhere: no such folder"]),
    ("no data folder", ["data {tmp}/no_data: no such folder", "nexa-preprocess"]),
    ("data is not a dataset version", ["data: {tmp}/empty: no manifest.json"]),
    ("data lacks the val split RT needs", ["data {tmp}/two_splits: no split 'val'", "['test', 'train']"]),
    ("no config file", ["config file not found: {tmp}/missing.yaml"]),
    ("no DeepSpeed config", ["DeepSpeed config not found: {tmp}/missing.json"]),
    ("out_dir under a file", ["out_dir {tmp}/a_file/run: {tmp}/a_file is a file, not a folder"]),
])
def test_finetune_input_errors(blocked, tmp_path, case, words):
    hf, data = export(tmp_path / "hf/demo"), version(tmp_path / "data")
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("")
    values, args = {"init": hf, "data": data}, []
    if case == "init is an empty folder":
        values["init"] = tmp_path / "empty"
    elif case == "init is another model":
        values["init"] = export(tmp_path / "bert", model_type="bert")
    elif case == "init has no weights":
        (hf / "model.safetensors").unlink()
    elif case == "init given on the command line":
        args = [f"--init={tmp_path}/nowhere"]
    elif case == "no data folder":
        values["data"] = tmp_path / "no_data"
    elif case == "data is not a dataset version":
        values["data"] = tmp_path / "empty"
    elif case == "data lacks the val split RT needs":
        values.update(task="rt", data=version(tmp_path / "two_splits", ("train", "test")))
    elif case == "no DeepSpeed config":
        args = ["--ds_config", str(tmp_path / "missing.json")]
    elif case == "out_dir under a file":
        values["out_dir"] = tmp_path / "a_file/run"
    config = str(tmp_path / "missing.yaml") if case == "no config file" else finetune_config(tmp_path, **values)
    out = run(blocked, "finetune", "--config", config, *args)
    one_line_error(out, "nexa-finetune", *(w.format(tmp=tmp_path) for w in words))


# --- nexa-eval -------------------------------------------------------------------------------------------------

def test_eval_with_a_model_folder_that_does_not_exist(blocked, tmp_path):
    data = version(tmp_path / "data")
    one_line_error(run(blocked, "eval", "--model", "/nonexistent", "--data", str(data)), "nexa-eval",
                   "--model /nonexistent: no such folder", "nexa-convert to-hf")


@pytest.mark.parametrize("case, words", [
    ("model is a dataset folder", ["--model {tmp}/data: not a Hugging Face export (no config.json"]),
    ("model without its code", ["--model {tmp}/hf: no configuration_nexa.py or modeling_nexa.py"]),
    ("model config.json damaged", ["--model {tmp}/hf/config.json: unreadable or not JSON"]),
    ("no data folder", ["--data {tmp}/no_data: no such folder"]),
    ("data lacks a split", ["--data {tmp}/two_splits: no split 'val'"]),
    ("out in a missing folder", ["--out {tmp}/no_dir/r.json: no such folder {tmp}/no_dir to write into"]),
    ("figure is a folder", ["--figure {tmp}: is a folder"]),
])
def test_eval_input_errors(blocked, tmp_path, case, words):
    hf, data = export(tmp_path / "hf", code=case != "model without its code"), version(tmp_path / "data")
    args = {"--model": hf, "--data": data}
    if case == "model is a dataset folder":
        args["--model"] = data
    elif case == "model config.json damaged":
        (hf / "config.json").write_text("{")
    elif case == "no data folder":
        args["--data"] = tmp_path / "no_data"
    elif case == "data lacks a split":
        args["--data"] = version(tmp_path / "two_splits", ("train", "test"))
    elif case == "out in a missing folder":
        args["--out"] = tmp_path / "no_dir/r.json"
    elif case == "figure is a folder":
        args["--figure"] = tmp_path
    out = run(blocked, "eval", *(str(x) for kv in args.items() for x in kv))
    one_line_error(out, "nexa-eval", *(w.format(tmp=tmp_path) for w in words))


@pytest.mark.parametrize("option, value, why", [
    ("--seeds", "0", "must be >= 1, got 0"), ("--epochs", "x", "not an integer: 'x'"),
    ("--ppm", "0", "must be > 0.0, got 0"), ("--max-train", "-1", "must be >= 0, got -1"),
])
def test_eval_numbers_out_of_range_are_usage_errors(blocked, tmp_path, option, value, why):
    out = run(blocked, "eval", "--model", str(tmp_path), "--data", str(tmp_path), option, value)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert out.stderr.strip().splitlines()[-1] == f"nexa-eval: error: argument {option}: {why}"


def safetensors_bytes(tensors: dict[str, list[int]]) -> bytes:
    """A safetensors file of float32 zeros, one per name and shape (written without torch)."""
    header, offset = {}, 0
    for name, shape in tensors.items():
        size = 4 * (shape[0] if shape else 1)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + bytes(offset)


@pytest.mark.parametrize("weights, words", [
    (b"garbage", ["{tmp}/hf/model.safetensors: cannot be read (SafetensorError"]),
    (safetensors_bytes({"stray": [2]}),
     ["{tmp}/hf does not fit the model config: missing keys: ", "unexpected keys: stray"]),
], ids=["damaged", "another model's"])
def test_finetune_init_weights_that_do_not_load(tmp_path, weights, words):
    """What only reading the weights shows (after torch and DeepSpeed are loaded) ends the same way: exit 2, the last
    line names the file and what is wrong; an empty dataset version is enough to get there."""
    (export(tmp_path / "hf") / "model.safetensors").write_bytes(weights)
    config = finetune_config(tmp_path, init=tmp_path / "hf", data=version(tmp_path / "data"))
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "megatron_nexa.cli.finetune", "--config", config], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("nexa-finetune: error: ") and all(w.format(tmp=tmp_path) in last for w in words), last
