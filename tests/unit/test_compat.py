"""compat/: each module checks the installed version of its library at import."""
import importlib.metadata

import pytest
import torch

from megatron_nexa import compat


@pytest.mark.parametrize("module", ["deepspeed", "megatron", "torch", "pyteomics"])
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


def test_mgf_record_parser_applies_the_header():
    from megatron_nexa.compat.pyteomics import mgf_record_parser

    parse = mgf_record_parser(["CHARGE=2+\n"])
    spec = parse(["BEGIN IONS\n", "PEPMASS=500.5\n", "100.0 10\n", "200.0 20\n", "END IONS\n"])
    assert spec["params"]["pepmass"][0] == 500.5 and spec["params"]["charge"] == [2]
    torch.testing.assert_close(torch.as_tensor(spec["m/z array"]), torch.tensor([100.0, 200.0], dtype=torch.float64))
