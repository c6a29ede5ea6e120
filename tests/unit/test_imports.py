"""Imports flow one way, through the layers of ``LAYERS``; only compat/ touches other libraries' private internals.
The engine does not import the planner (the FLOPs formula both use is ``model.flops``), eval/ and finetune/ share
downstream/ and not each other, and the model never sees DeepSpeed (compat.deepspeed is the engine's)."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "megatron_nexa"

# Bottom to top. A module may import its own layer and what its row names (layers below it, or single modules of
# one), nothing else of ours; ``banned``: libraries it must not import at all.
LAYERS = [
    # layer        its modules                                    may import                        banned
    ("config",     ["config"],                                    [],                               ["deepspeed", "megatron"]),
    ("util",       ["fsutil", "tokens", "plot"],                  [],                               ["deepspeed", "megatron"]),
    ("compat",     ["compat"],                                    [],                               []),
    ("data",       ["data"],                                      ["config", "util", "compat.pyteomics"],
                                                                                                    ["deepspeed", "megatron"]),
    ("model",      ["model", "losses"],                           ["config", "util", "compat.megatron", "compat.torch"],
                                                                                                    ["deepspeed"]),
    ("plan",       ["plan", "cluster_plan", "comm_plan", "step_time"], ["config", "model"],              ["deepspeed", "megatron"]),
    ("engine",     ["engine"],                                    ["config", "util", "compat", "data", "model"], []),
    ("testing",    ["testing"],                                   ["config", "util", "data", "model"], ["deepspeed"]),
    ("convert",    ["convert"],                                   ["config", "model"],              []),  # see below
    ("inference",  ["inference", "inference_inputs"],            ["config", "util", "data"],       ["deepspeed", "megatron"]),
    ("downstream", ["downstream"],                                ["config", "util", "data"],       ["deepspeed", "megatron"]),
    ("eval",       ["eval"],                                      ["config", "util", "data", "inference", "downstream",
                                                                   "compat.spec2vec"],
                                                                                                    ["deepspeed", "megatron"]),
    ("finetune",   ["finetune"],                                  ["config", "util", "data", "model", "engine", "convert",
                                                                   "downstream"],                   []),
    ("preflight",  ["preflight"],                                 ["config", "util", "compat", "data", "model", "plan",
                                                                   "engine"],                       []),
    ("cli",        ["cli", ""],  # "": the package's own __init__ (``megatron_nexa.embed``)
                   ["config", "util", "compat", "data", "model", "plan", "engine", "testing", "convert", "inference",
                    "downstream",
                    "eval", "finetune", "preflight"],                                               []),
]
# Inside data/: preprocessing (offline) and training data (online) share the dataset format, not each other.
DATA_PARTS = {
    "format": ["spectrum", "indexed", "manifest", "version", "mixing", "tokenize", "peak_selection", "labs"],
    "offline": ["preprocess", "filters", "dedup", "readers", "shards", "work_state"],
    "online": ["dataset", "loader", "sampler", "batch", "masking", "augment", "pairs", "blend", "source"],
}
LIBRARIES = ("deepspeed", "megatron", "torch", "pyteomics")
PATCHED = ("deepspeed.runtime.zero.partition_parameters", "deepspeed.runtime.zero.parameter_offload",
           "deepspeed.runtime.zero.partitioned_param_coordinator", "megatron.core.utils",
           "megatron.core.tensor_parallel.random")  # modules whose attributes compat/ replaces
# Python's own special names are public; a library's own ``__x__`` (DeepSpeed's ``ops.__compatible_ops__``) is not.
PYTHON_DUNDERS = {n for t in (type, int, list, dict, type(len), type(lambda: 0), type(ast)) for n in dir(t)} | {
    "__enter__", "__exit__", "__call__", "__version__", "__file__", "__all__", "__path__"}


def private(attr: str) -> bool:
    return attr.startswith("_") and attr not in PYTHON_DUNDERS


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_our_module(name: str) -> bool:
    path = PKG.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth; ``from package import module`` counts as the module."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the file's path
                parts = path.relative_to(PKG.parent).with_suffix("").parts[: -node.level]
                base = ".".join(parts + ((node.module,) if node.module else ()))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                names.add(sub if base.startswith("megatron_nexa") and is_our_module(sub) else base)
    return names


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def rows_of(name: str) -> list[tuple]:
    """The rows of ``LAYERS`` that hold our module ``name``."""
    rel = name.removeprefix("megatron_nexa").removeprefix(".")
    return [row for row in LAYERS if any(within(rel, m) if m else rel == "" for m in row[1])]


def layer_of(name: str) -> str | None:
    """The layer of our module ``name``; None for the package root as imported: all it holds at import time is
    ``__version__`` (its ``embed`` imports inference when called)."""
    return None if name == "megatron_nexa" else rows_of(name)[0][0]


def our_files():
    return sorted(PKG.rglob("*.py"))


def test_the_table_is_bottom_to_top():
    seen = set()
    for layer, _, allowed, _ in LAYERS:
        for entry in allowed:
            assert entry.split(".")[0] in seen, f"{layer} may import {entry}, which is not below it"
        seen.add(layer)


def test_every_module_has_one_layer():
    for path in our_files():
        layers = [row[0] for row in rows_of(module_name(path))]
        assert len(layers) == 1, f"{module_name(path)}: layers {layers}; give it one in LAYERS"


def violations(path: Path) -> list[str]:
    layer, _, allowed, banned = rows_of(module_name(path))[0]
    bad = []
    for name in imports_of(path):
        if name.startswith("megatron_nexa"):
            theirs = layer_of(name)
            sub = name.removeprefix("megatron_nexa.")
            if theirs not in (None, layer) and theirs not in allowed and not any(within(sub, a) for a in allowed):
                bad.append(f"{path.relative_to(PKG.parent)} ({layer}) imports {name} ({theirs})")
        elif any(within(name, lib) for lib in banned):
            bad.append(f"{path.relative_to(PKG.parent)} ({layer}) imports {name}")
    return bad


def test_imports_flow_down_the_layers():
    assert [v for path in our_files() for v in violations(path)] == []


def test_convert_uses_deepspeed_only_to_consolidate_zero_checkpoints():
    users = {p.name for p in (PKG / "convert").rglob("*.py") if any(within(n, "deepspeed") for n in imports_of(p))}
    assert users <= {"zero_to_torch.py"}


def test_the_reference_encoder_needs_no_megatron():  # the Hugging Face export runs it
    for name in ("reference.py", "embeddings.py", "attention_mask.py", "heads.py", "pretraining.py", "flops.py"):
        assert not [n for n in imports_of(PKG / "model" / name) if within(n, "megatron")], name


def test_preprocessing_and_training_data_share_only_the_format():
    part_of = {f"megatron_nexa.data.{m}": part for part, modules in DATA_PARTS.items() for m in modules}

    def part(name):
        return next((p for m, p in part_of.items() if within(name, m)), None)

    files = [p for p in (PKG / "data").rglob("*.py") if p != PKG / "data" / "__init__.py"]
    assert [module_name(p) for p in files if part(module_name(p)) is None] == [], "add it to DATA_PARTS"
    for path in files:
        mine = part(module_name(path))
        for name in imports_of(path):
            theirs = part(name)
            assert theirs in (None, mine, "format"), f"{module_name(path)} ({mine}) imports {name} ({theirs})"
            assert not (mine == "format" and theirs not in (None, "format")), f"{module_name(path)} imports {name}"


def private_uses(path: Path) -> list[str]:
    """Imports of private modules or names of DeepSpeed, megatron-core, torch and pyteomics, imports of the modules
    compat/ patches, and any ``x._name`` / ``getattr(x, "_name")`` not on ``self``/``cls`` or a stdlib module."""
    tree = ast.parse(path.read_text())
    stdlib_names, found = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                lib = any(within(a.name, lib) for lib in LIBRARIES)
                if lib and (any(p.startswith("_") for p in a.name.split(".")) or any(within(a.name, p) for p in PATCHED)):
                    found.append(f"import {a.name}")
                if not lib and not a.name.startswith("megatron_nexa"):
                    stdlib_names.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and any(within(node.module, lib) for lib in LIBRARIES):
            hidden = any(p.startswith("_") for p in node.module.split(".")) or any(
                a.name.startswith("_") for a in node.names)
            patched = any(within(f"{node.module}.{a.name}", p) or within(node.module, p)
                          for a in node.names for p in PATCHED)
            if hidden or patched:
                found.append(f"from {node.module} import {', '.join(a.name for a in node.names)}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if not (isinstance(root, ast.Name) and root.id in {"self", "cls"} | stdlib_names):
                found.append(f"line {node.lineno}: .{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr")
              and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
              and private(node.args[1].value)):
            found.append(f"line {node.lineno}: {node.func.id}(…, {node.args[1].value!r})")
    return found


def test_only_compat_touches_private_internals():
    outside = [p for p in our_files() if not within(module_name(p), "megatron_nexa.compat")]
    assert {str(p.relative_to(PKG.parent)): private_uses(p) for p in outside if private_uses(p)} == {}


def test_the_engine_alone_applies_compat_deepspeed():
    users = {module_name(p) for p in our_files() if "megatron_nexa.compat.deepspeed" in imports_of(p)}
    assert {layer_of(u) for u in users} <= {"engine"}, users


@pytest.mark.parametrize("source, caught", [
    ("from megatron_nexa.model import encoder\nimport deepspeed.comm\n", None),
    ("import torch\nx = torch._C._nn.linear\n", "line 2: ._nn"),
    ("from megatron.core.tensor_parallel.random import _get_cuda_rng_state\n", "from megatron.core.tensor_parallel"),
    ("class A(B):\n    def f(self):\n        return super()._forward_impl()\n", "line 3: ._forward_impl"),
    ("from deepspeed.runtime.zero import parameter_offload\n", "from deepspeed.runtime.zero import parameter_offload"),
    ("import deepspeed\ndeepspeed.ops.__compatible_ops__['x'] = 0\n", "line 2: .__compatible_ops__"),
    ("def f(reader):\n    return getattr(reader, '_read_spectrum_lines')\n", "line 2: getattr(…, '_read_spectrum_lines')"),
    ("import os, sys\nos._exit(sys._getframe(0).f_lineno)\n", ""),
])
def test_the_checkers_catch_violations(tmp_path, source, caught):
    bad = tmp_path / "x.py"
    bad.write_text(source)
    if caught is None:
        assert {"megatron_nexa.model.encoder", "deepspeed.comm"} <= imports_of(bad)
    elif caught:
        assert any(use.startswith(caught) for use in private_uses(bad)), private_uses(bad)
    else:
        assert private_uses(bad) == []
