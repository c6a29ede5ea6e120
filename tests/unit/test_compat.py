"""compat/: each module checks the installed version of its library at import; ZeRO-3 leaf modules are named from
the model's classes, and a name that no longer names a class is an error naming it."""
import importlib.metadata

import pytest
import torch
from torch import nn

from megatron_nexa import compat
from megatron_nexa.config import ConfigError
from megatron_nexa.engine.ds_config import with_leaf_modules


@pytest.mark.parametrize("module", ["deepspeed", "megatron", "torch", "pyteomics", "spec2vec"])
def test_installed_versions_are_supported(module):
    m = importlib.import_module(f"megatron_nexa.compat.{module}")
    assert m.VERSION and m.SUPPORTED


def test_an_unsupported_version_is_an_error_naming_package_version_and_range(monkeypatch):
    monkeypatch.setattr(compat, "version", lambda package: "0.18.2")
    monkeypatch.delenv(compat.ALLOW_UNTESTED, raising=False)
    with pytest.raises(compat.UnsupportedVersion, match=r"deepspeed 0\.18\.2 .* deepspeed>=0\.19,<0\.20"):
        compat.require("deepspeed", ">=0.19,<0.20")
    monkeypatch.setenv(compat.ALLOW_UNTESTED, "1")
    with pytest.warns(UserWarning, match=r"deepspeed 0\.18\.2"):
        assert compat.require("deepspeed", ">=0.19,<0.20") == "0.18.2"


def test_local_and_pre_release_builds_count_by_their_release():
    assert compat.SpecifierSet(">=2.4,<3").contains(compat.Version("2.13.0+cpu"), prereleases=True)
    assert compat.SpecifierSet(">=2.4,<3").contains(compat.Version("2.14.0.dev20270101"), prereleases=True)


def test_a_missing_package_is_named():
    with pytest.raises(compat.UnsupportedVersion, match="no-such-package is not installed"):
        compat.require("no-such-package", ">=1")


class Leaf(nn.Module):
    gathered_whole = True

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.plain = Leaf(), Leaf(), nn.Linear(2, 2)


def zero3(classes) -> dict:
    return {"zero_optimization": {"stage": 3, "leaf_module": {"classes": classes}}}


def test_auto_names_the_classes_the_model_declares():
    ds = zero3("auto")
    filled = with_leaf_modules(ds, Model())
    assert filled["zero_optimization"]["leaf_module"]["classes"] == [f"{__name__}.Leaf"]
    assert ds["zero_optimization"]["leaf_module"]["classes"] == "auto"  # a copy


def test_the_shipped_model_declares_its_layers_and_heads():
    from megatron_nexa.model.heads import ContrastiveHead, MaskedPeakHead, RetentionOrderHead
    from megatron_nexa.model.layer_specs import NexaTransformerLayer

    for cls in (NexaTransformerLayer, MaskedPeakHead, RetentionOrderHead, ContrastiveHead):
        assert cls.gathered_whole


@pytest.mark.parametrize("classes", [[f"{__name__}.Leaf", "torch.nn.modules.linear.Linear", "Linear"], [],
                                     "torch.nn.modules.linear.Linear"])
def test_classes_that_resolve_are_kept(classes):
    assert with_leaf_modules(zero3(classes), Model()) == zero3(classes)


@pytest.mark.parametrize("name, problem", [
    ("megatron_nexa.model.layer_specs.NexaTransformerBlock", "not found in megatron_nexa.model.layer_specs"),
    ("torch.nn.Linear", "defined as torch.nn.modules.linear.Linear"),  # DeepSpeed compares where it is defined
    ("torch.nn.functional.linear", "not a class"),
    ("nowhere.Leaf", "not importable"),
    ("NexaTransformerLayer", "no module of the model"),
])
def test_a_name_that_is_no_class_is_an_error_naming_it(name, problem):
    with pytest.raises(ConfigError, match=f"'{name}', which is {problem}"):
        with_leaf_modules(zero3([f"{__name__}.Leaf", name]), Model(), source="zero3.json")


def test_without_leaf_modules_deepspeeds_defaults_stand():
    ds = {"zero_optimization": {"stage": 3}}
    assert with_leaf_modules(ds, Model()) is ds


def test_mgf_record_parser_applies_the_header():
    from megatron_nexa.compat.pyteomics import mgf_record_parser

    parse = mgf_record_parser(["CHARGE=2+\n"])
    spec = parse(["BEGIN IONS\n", "PEPMASS=500.5\n", "100.0 10\n", "200.0 20\n", "END IONS\n"])
    assert spec["params"]["pepmass"][0] == 500.5 and spec["params"]["charge"] == [2]
    torch.testing.assert_close(torch.as_tensor(spec["m/z array"]), torch.tensor([100.0, 200.0], dtype=torch.float64))


def test_spec2vec_imports_and_makes_documents_on_the_pinned_matchms():
    import numpy as np
    from matchms import Spectrum

    from megatron_nexa.compat.spec2vec import SpectrumDocument

    doc = SpectrumDocument(Spectrum(mz=np.array([100.0, 150.004]), intensities=np.array([0.5, 1.0])), n_decimals=2)
    assert doc.words == ["peak@100.00", "peak@150.00"] and doc.weights == [0.5, 1.0]


def test_the_supported_ranges_are_the_ones_setup_py_installs():
    """Each seam's version range is what setup.py asks pip for, so an install can never land outside it."""
    import re

    from megatron_nexa.compat import deepspeed, megatron, pyteomics, spec2vec
    from megatron_nexa.compat import torch as compat_torch
    from tests.conftest import REPO

    setup = (REPO / "setup.py").read_text()
    for package, module in (("torch", compat_torch), ("deepspeed", deepspeed), ("megatron-core", megatron),
                            ("pyteomics", pyteomics), ("spec2vec", spec2vec)):
        spec = re.search(rf'"{re.escape(package)}([<>=!~][^"]*)"', setup).group(1)
        assert spec == module.SUPPORTED, package
