"""The export's processor, used as a Hugging Face user would (transformers only: megatron_nexa, DeepSpeed and megatron
unimportable), gives the inputs and embeddings of ``megatron_nexa.embed`` on MassBank spectra: spectra cut at
``top_k`` and at ``max_peaks``, with peaks tied in intensity at the cut, real and synthetic. A random tiny model is
enough: the check is the preprocessing, and the model only has to see it."""
import dataclasses
import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

from megatron_nexa.data.filters import PreprocessSettings, filter_chunk
from megatron_nexa.data.readers.mgf import read_mgf
from megatron_nexa.data.spectrum import SpectraChunk, pad_peak_lists
from megatron_nexa.data.tokenize import single_row
from tests.conftest import MASSBANK_FILES, REPO, child_env

# top_k above the tiny model's max_peaks (32), so both cuts act; the limits drop a few peaks of most spectra
SETTINGS = PreprocessSettings(top_k=48, mz_min=40.0, precursor_tolerance=1.5)
FIELDS = ("token_type", "mz", "intensity", "segment")

BLOCKER = textwrap.dedent("""
    import importlib.abc, sys

    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("megatron_nexa", "deepspeed", "megatron"):
                raise ModuleNotFoundError(f"No module named {name!r} (the export must not need it)", name=name)
            return None

    sys.meta_path.insert(0, Blocked())
""")

USER = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    from transformers import AutoModel, AutoProcessor

    hf, data, out = sys.argv[1:]
    arrays = np.load(data)
    cuts = np.cumsum(arrays["count"])[:-1]
    spectra = list(zip(np.split(arrays["mz"], cuts), np.split(arrays["intensity"], cuts), arrays["precursor_mz"]))
    processor = AutoProcessor.from_pretrained(hf, trust_remote_code=True)
    model = AutoModel.from_pretrained(hf, trust_remote_code=True)
    inputs = processor(spectra)
    with torch.no_grad():
        direct = model(**inputs).cls_embedding
    cls, mean = processor.embed(spectra, model), processor.embed(spectra, model, pooling="mean")
    np.savez(out, cls=cls.numpy(), mean=mean.numpy(), direct=direct.numpy(), **{k: v.numpy() for k, v in inputs.items()})
    unimportable = []
    for name in ("megatron_nexa", "deepspeed", "megatron"):
        try:
            __import__(name)
        except ImportError:
            unimportable.append(name)
    print(json.dumps({"processor": type(processor).__name__, "unimportable": unimportable}))
""")


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    from megatron_nexa.config import load_config
    from megatron_nexa.convert.to_hf import write_hf
    from megatron_nexa.model.pretraining import NexaSpecForPretraining
    from megatron_nexa.model.reference import ReferenceEncoder

    cfg = load_config(REPO / "configs/model/tiny.yaml").model
    torch.manual_seed(0)
    model = NexaSpecForPretraining(cfg, ReferenceEncoder(cfg)).eval()
    return write_hf(model.state_dict(), cfg, tmp_path_factory.mktemp("processor") / "hf",
                    preprocessing=SETTINGS.to_dict())


def tied_at(intensity: np.ndarray, k: int) -> bool:
    """Peaks of equal intensity on both sides of the cut at ``k``: which are kept is up to the tie rule."""
    s = np.sort(intensity)[::-1]
    return len(s) > k and s[k - 1] == s[k]


def valid_intensities(spectra) -> list[np.ndarray]:
    """Each spectrum's intensities after the peak filters, before any cut (normalised: the same ties); None for a
    rejected spectrum."""
    mz, intensity, count = pad_peak_lists([s[0] for s in spectra], [s[1] for s in spectra])
    chunk = SpectraChunk(mz, intensity, count, np.array([s[2] for s in spectra]))
    out = filter_chunk(chunk, dataclasses.replace(SETTINGS, top_k=max(mz.shape[1], 1), min_peaks=1))
    kept, valid = np.setdiff1d(np.arange(len(spectra)), out.rejected), [None] * len(spectra)
    for i, row in enumerate(kept):
        valid[row] = out.chunk.intensity[i, :out.chunk.count[i]]
    return valid


def with_ties_at(spectrum: tuple, k: int) -> tuple:
    """``spectrum`` with its peaks ranked k-4 … k+3 by intensity set to the intensity at rank k-1."""
    mz, intensity, precursor = spectrum
    ranked = np.argsort(-intensity, kind="stable")
    intensity = intensity.copy()
    intensity[ranked[k - 4:k + 4]] = intensity[ranked[k - 1]]
    return mz, intensity, precursor


def chosen_spectra() -> list[tuple]:
    """Real spectra tied at the top_k cut, tied at the max_peaks cut, longer than top_k untied, and ordinary; then
    synthetic ties at both cuts, and a spectrum with peaks each filter drops. Ties are judged on the valid peaks."""
    path = [f for f in MASSBANK_FILES if "dl-de" in f][0]
    chunk = next(c for c, _ in read_mgf(path, 3000))
    real = [(chunk.mz[r, :chunk.count[r]], chunk.intensity[r, :chunk.count[r]], float(chunk.precursor_mz[r]))
            for r in range(len(chunk))]
    groups = {"top_k tie": [], "max_peaks tie": [], "long": [], "short": []}
    for spectrum, intensity in zip(real, valid_intensities(real)):
        if intensity is None:
            continue
        group = ("top_k tie" if tied_at(intensity, 48) else "max_peaks tie" if tied_at(intensity, 32)
                 else "long" if len(intensity) > 48 else "short" if len(intensity) < 32 else None)
        if group and len(groups[group]) < 6:
            groups[group].append(spectrum)
    assert {g: len(s) for g, s in groups.items()} == {g: 6 for g in groups}, "MassBank has fewer such spectra"
    synthetic = [with_ties_at(groups["long"][0], 32), with_ties_at(groups["long"][1], 48)]
    assert [tied_at(i, k) for i, k in zip(valid_intensities(synthetic), (32, 48))] == [True, True]
    mz, intensity, precursor = synthetic[1]  # with peaks below mz_min, of zero intensity, NaN, above the precursor
    synthetic.append((np.r_[mz, 10.0, 150.0, np.nan, precursor + 9], np.r_[intensity, 5e9, 0.0, 5e9, 5e9], precursor))
    return [s for group in groups.values() for s in group] + synthetic


def reference_inputs(spectra, max_peaks: int) -> dict:
    """Tokens as megatron_nexa.embed builds them (inference._embed_block): filter_chunk, then single_row."""
    mz, intensity, count = pad_peak_lists([s[0] for s in spectra], [s[1] for s in spectra])
    chunk = SpectraChunk(mz, intensity, count, np.array([s[2] for s in spectra]))
    k = filter_chunk(chunk, dataclasses.replace(SETTINGS, min_peaks=1)).chunk
    rows = [single_row(k.mz[i, :k.count[i]], k.intensity[i, :k.count[i]], float(k.precursor_mz[i]), max_peaks)
            for i in range(len(k))]
    return {f: np.stack([getattr(r, f) for r in rows]) for f in FIELDS}


def test_processor_with_transformers_only_equals_embed(export, tmp_path):
    import megatron_nexa

    if len(MASSBANK_FILES) != 4:
        pytest.skip("../shared/data/massbank is missing")

    spectra = chosen_spectra()
    np.savez(tmp_path / "spectra.npz", mz=np.concatenate([s[0] for s in spectra]),
             intensity=np.concatenate([s[1] for s in spectra]), count=[len(s[0]) for s in spectra],
             precursor_mz=[s[2] for s in spectra])
    (tmp_path / "site").mkdir()
    (tmp_path / "site/sitecustomize.py").write_text(BLOCKER)
    out = subprocess.run([sys.executable, "-c", USER, str(export), str(tmp_path / "spectra.npz"),
                          str(tmp_path / "out.npz")], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env=child_env(PYTHONPATH=str(tmp_path / "site"), DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    said = json.loads(out.stdout.strip().splitlines()[-1])
    assert said == {"processor": "NexaSpecProcessor", "unimportable": ["megatron_nexa", "deepspeed", "megatron"]}
    for report in ("LOAD REPORT", "UNEXPECTED", "no preprocessing settings"):  # heads not reported; settings found
        assert report not in out.stdout + out.stderr, out.stderr[-3000:]

    hf = np.load(tmp_path / "out.npz")
    ours = reference_inputs(spectra, 32)
    for field in FIELDS:
        np.testing.assert_array_equal(hf[field], ours[field], err_msg=field)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cut spectra are counted in a warning
        cls = megatron_nexa.embed(spectra, model=export)
        mean = megatron_nexa.embed(spectra, model=export, pooling="mean")
    np.testing.assert_allclose(hf["cls"], cls, atol=1e-5, rtol=0)
    np.testing.assert_allclose(hf["mean"], mean, atol=1e-5, rtol=0)
    np.testing.assert_allclose(hf["direct"], cls, atol=1e-5, rtol=0)
    assert np.abs(cls).max() > 0.1 and np.abs(cls - mean).max() > 1e-3  # not a trivial comparison


def load_processor(folder, **kwargs):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(folder), trust_remote_code=True, **kwargs)


def test_processor_inputs_and_errors(export):
    from matchms import Spectrum

    processor = load_processor(export)
    rng = np.random.default_rng(1)
    spectra = [(rng.uniform(50, 400, n), rng.integers(1, 4, n).astype(float), 420.0) for n in (5, 60)]
    both = processor(spectra)
    assert {k: tuple(v.shape) for k, v in both.items()} == {f: (2, 34) for f in FIELDS}
    assert both["token_type"].dtype == torch.int64 and both["mz"].dtype == torch.float32
    assert torch.equal(processor(spectra[1])["mz"][0], both["mz"][1])  # one spectrum, not a list of one
    matchms = [Spectrum(mz=np.sort(m), intensities=i[np.argsort(m)], metadata={"precursor_mz": p})
               for m, i, p in spectra]
    as_arrays = processor([(s.peaks.mz, s.peaks.intensities, 420.0) for s in matchms])
    assert all(torch.equal(processor(matchms)[f], as_arrays[f]) for f in FIELDS)
    assert isinstance(processor(spectra, return_tensors="np")["mz"], np.ndarray)
    bad = [
        ([spectra[0], (np.array([-1.0, 30.0]), np.array([1.0, 2.0]), 100.0)], r"spectrum #1: no valid peak among 2"),
        ([spectra[0], spectra[0], (np.array([50.0]), np.array([1.0]), None)], r"spectrum #2: no precursor m/z"),
        ([(np.array([50.0, 60.0]), np.array([1.0]), 100.0)], r"spectrum #0: 2 m/z values but 1 intensities"),
        ([(np.ones((2, 2)), np.ones((2, 2)), 100.0)], r"spectrum #0: m/z and intensity must be one-dimensional"),
    ]
    for given, message in bad:
        with pytest.raises(ValueError, match=message):
            processor(given)
    with pytest.raises(TypeError, match="files are not read here"):
        processor("spectra.mgf")
    with pytest.raises(ValueError, match="pooling must be one of cls, mean"):
        processor.embed(spectra, None, pooling="max")


def test_export_without_settings_warns_and_uses_the_preprocessing_defaults(tmp_path):
    """As embed() does; the processor's defaults are PreprocessSettings' defaults."""
    import inspect

    import megatron_nexa
    from megatron_nexa.config import load_config
    from megatron_nexa.convert.hf_processor import SETTINGS as PROCESSOR_SETTINGS
    from megatron_nexa.convert.to_hf import write_hf
    from megatron_nexa.model.pretraining import NexaSpecForPretraining
    from megatron_nexa.model.reference import ReferenceEncoder
    from transformers import AutoModel

    cfg = load_config(REPO / "configs/model/tiny.yaml").model
    torch.manual_seed(0)
    hf = write_hf(NexaSpecForPretraining(cfg, ReferenceEncoder(cfg)).state_dict(), cfg, tmp_path / "hf",
                  preprocessing_missing="no manifest at data/v")
    with pytest.warns(UserWarning, match=r"no preprocessing settings \(no manifest at data/v\)"):
        processor = load_processor(hf)
    assert sys.modules[type(processor).__module__].SETTINGS == PROCESSOR_SETTINGS
    defaults = inspect.signature(type(processor).__init__).parameters
    assert {k: defaults[k].default for k in PROCESSOR_SETTINGS} == {
        k: getattr(PreprocessSettings(), k) for k in PROCESSOR_SETTINGS}
    spectra = chosen_spectra()[:8] if len(MASSBANK_FILES) == 4 else []
    spectra.append((np.linspace(50, 300, 300), np.arange(300) % 7 + 1.0, 310.0))  # past top_k=256, with ties
    with pytest.warns(UserWarning):
        ours = megatron_nexa.embed(spectra, model=hf)
    model = AutoModel.from_pretrained(str(hf), trust_remote_code=True)
    np.testing.assert_allclose(processor.embed(spectra, model, batch_size=3).numpy(), ours, atol=1e-5, rtol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # given settings: no warning
        assert load_processor(hf, top_k=7).top_k == 7
