"""Imports flow one way: data/ ↛ model/engine/convert; model/ ↛ DeepSpeed/engine/data;
convert/ → config and model only; the reference encoder needs no megatron-core (HF export)."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "megatron_nexa"


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package path
                base = path.relative_to(PKG.parent).with_suffix("").parts[: -node.level]
                names.add(".".join(base + ((node.module,) if node.module else ())))
            else:
                names.add(node.module)
    return names


def violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((PKG / folder).rglob("*.py")):
        for name in imports_of(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(PKG.parent)} imports {name}")
    return bad


@pytest.mark.parametrize("folder, forbidden", [
    ("data", ("megatron_nexa.model", "megatron_nexa.engine", "megatron_nexa.convert", "deepspeed", "megatron")),
    ("model", ("deepspeed", "megatron_nexa.engine", "megatron_nexa.data", "megatron_nexa.convert")),
])
def test_import_direction(folder, forbidden):
    assert violations(folder, forbidden) == []


def test_fsutil_imports_nothing_of_ours():
    """data/, engine/ and the CLIs all write state files through it: it must sit below every layer."""
    assert not [n for n in imports_of(PKG / "fsutil.py") if n.startswith("megatron_nexa")]


def test_convert_imports_only_config_and_model():
    allowed = ("megatron_nexa.config", "megatron_nexa.model", "megatron_nexa.convert")
    for path in sorted((PKG / "convert").rglob("*.py")):
        for name in imports_of(path):
            if name.startswith("megatron_nexa"):
                assert name.startswith(allowed), f"{path.name} imports {name}"
            if name.startswith("deepspeed"):  # DeepSpeed's own ZeRO consolidation, and nowhere else
                assert path.name == "zero_to_torch.py", f"{path.name} imports {name}"


def test_reference_encoder_needs_no_megatron():
    for name in ("reference.py", "embeddings.py", "attention_mask.py", "heads.py", "pretraining.py"):
        assert not [n for n in imports_of(PKG / "model" / name) if n.startswith("megatron.")], name


def test_the_checker_catches_a_violation(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("from megatron_nexa.model import encoder\nimport deepspeed.comm\n")
    assert {"megatron_nexa.model", "deepspeed.comm"} <= imports_of(bad)
