"""embed() / nexa-embed: one row per input record in input order, counted remarks on what the model cannot see
as given, input checks in the exported model, the training model accepted, and the encoder loaded from a
pretraining export without a load report. A random tiny model is enough."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from megatron_nexa.data.filters import PreprocessSettings
from tests.conftest import REPO, child_env
from megatron_nexa.testing import write_gems
from tests.spectra_files import write_mgf, write_mzml


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(config, training model with the reference encoder, its HF export folder)."""
    from megatron_nexa.config import load_config
    from megatron_nexa.convert.to_hf import write_hf
    from megatron_nexa.model.pretraining import NexaSpecForPretraining
    from megatron_nexa.model.reference import ReferenceEncoder

    cfg = load_config(REPO / "configs/model/tiny.yaml").model
    torch.manual_seed(0)
    model = NexaSpecForPretraining(cfg, ReferenceEncoder(cfg)).eval()
    out = write_hf(model.state_dict(), cfg, tmp_path_factory.mktemp("embed") / "hf",
                   preprocessing=PreprocessSettings().to_dict())
    return cfg, model, out


def spectrum(title, pepmass, mz, intensity=None):
    mz = np.asarray(mz, float)
    return {"title": title, "pepmass": pepmass, "mz": mz,
            "intensity": np.linspace(10, 100, len(mz)) if intensity is None else np.asarray(intensity, float)}


GOOD = {"A": spectrum("A", 300.0, [50.1, 120.2, 250.3]), "C": spectrum("C", 410.0, [60.0, 99.5, 180.7, 400.1]),
        "E": spectrum("E", 515.5, [77.7, 201.2])}
MIXED = [GOOD["A"], spectrum("B", None, [50.0, 60.0]), GOOD["C"], spectrum("D", 400.0, [-5.0, -1.0]), GOOD["E"]]


def alone(hf, s):
    from megatron_nexa.inference import embed

    return embed([(s["mz"], s["intensity"], s["pepmass"])], hf)[0]


def test_rejected_records_keep_their_rows(tiny, tmp_path):
    """B has no PEPMASS (the reader rejects it), D no valid peak (the filter does): each still gets its row."""
    from megatron_nexa.inference import embed, embed_records

    _, _, hf = tiny
    write_mgf(tmp_path / "mixed.mgf", MIXED)
    with pytest.warns(UserWarning, match="2 spectra could not be embedded") as caught:
        emb = embed(str(tmp_path / "mixed.mgf"), hf)
    assert emb.shape == (5, 32)
    assert np.isnan(emb[[1, 3]]).all() and np.isfinite(emb[[0, 2, 4]]).all()
    for row, title in ((0, "A"), (2, "C"), (4, "E")):
        np.testing.assert_allclose(emb[row], alone(hf, GOOD[title]), atol=1e-6)
    assert not np.allclose(emb[0], emb[2], atol=1e-3)
    text = str(caught[0].message)
    assert "row 1 (mixed.mgf #1 B): missing PEPMASS" in text and "row 3 (mixed.mgf #3 D): fewer than 1" in text

    emb2, records = embed_records([str(tmp_path / "mixed.mgf"), str(tmp_path / "mixed.mgf")], hf)
    assert emb2.shape == (10, 32) and [r.record for r in records] == list("ABCDE") * 2
    assert [r.index for r in records] == [0, 1, 2, 3, 4] * 2
    assert [r.embedded for r in records] == [True, False, True, False, True] * 2
    np.testing.assert_array_equal(emb2[5:], emb)


def test_mzml_scans_keep_their_rows(tiny, tmp_path):
    """An MS1 scan and an MS2 scan without precursor sit between good scans: rows stay aligned with scan ids."""
    from megatron_nexa.inference import embed_records

    _, _, hf = tiny
    a, c = GOOD["A"], GOOD["C"]
    write_mzml(tmp_path / "run.mzML", [
        {"id": "scan=1", "ms_level": 2, "mz": a["mz"], "intensity": a["intensity"], "precursor": a["pepmass"]},
        {"id": "scan=2", "ms_level": 1, "mz": [100.0, 200.0], "intensity": [1.0, 2.0]},
        {"id": "scan=3", "ms_level": 2, "mz": [100.0], "intensity": [1.0]},
        {"id": "scan=4", "ms_level": 2, "mz": c["mz"], "intensity": c["intensity"], "precursor": c["pepmass"]}])
    with pytest.warns(UserWarning, match="2 spectra could not be embedded"):
        emb, records = embed_records(str(tmp_path / "run.mzML"), hf)
    assert [r.record for r in records] == ["scan=1", "scan=2", "scan=3", "scan=4"]
    assert np.isnan(emb[[1, 2]]).all()
    np.testing.assert_allclose(emb[0], alone(hf, a), atol=1e-6)
    np.testing.assert_allclose(emb[3], alone(hf, c), atol=1e-6)


def test_empty_files_get_no_row_and_gems_rows_keep_their_numbers(tiny, tmp_path):
    from megatron_nexa.inference import embed_records

    _, _, hf = tiny
    (tmp_path / "empty.mgf").write_text("")
    write_mgf(tmp_path / "mixed.mgf", MIXED)
    write_gems(tmp_path / "g.h5", 6)
    with pytest.warns(UserWarning, match=r"1 input files gave no rows: empty.mgf: empty file"):
        emb, records = embed_records([tmp_path / "empty.mgf", tmp_path / "g.h5", tmp_path / "mixed.mgf"], hf)
    assert len(emb) == len(records) == 11
    assert [(r.source, r.record) for r in records[:6]] == [("g.h5", str(i)) for i in range(6)]
    assert np.isfinite(emb[:6]).all() and [r.record for r in records[6:]] == list("ABCDE")


def test_nexa_embed_writes_one_row_and_one_record_line_per_input_record(tiny, tmp_path, capsys):
    from megatron_nexa.cli.embed import main

    _, _, hf = tiny
    write_mgf(tmp_path / "mixed.mgf", MIXED)
    with pytest.warns(UserWarning):
        assert main([str(hf), str(tmp_path / "mixed.mgf"), "--out", str(tmp_path / "emb.npy")]) == 0
    emb = np.load(tmp_path / "emb.npy")
    lines = (tmp_path / "emb.records.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["row", "source", "index", "record", "embedded", "note"]
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == len(emb) == 5 and [r[3] for r in rows] == list("ABCDE")
    assert [r[4] for r in rows] == ["1", "0", "1", "0", "1"] and rows[1][5] == "missing PEPMASS"
    assert np.isnan(emb[1]).all() and np.isfinite(emb[4]).all()
    assert "2 NaN rows" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["{hf}", "{tmp}/missing.mgf"], "missing.mgf: no such file"),
    (["{tmp}/no_model", "{tmp}/mixed.mgf"], "no_model: no such folder"),
    (["{tmp}", "{tmp}/mixed.mgf"], "not a Hugging Face folder"),
    (["{hf}", "{tmp}/spectra.txt"], "unknown spectra format"),
])
def test_nexa_embed_user_errors_exit_2_with_one_line(tiny, tmp_path, capsys, args, message):
    from megatron_nexa.cli.embed import main

    write_mgf(tmp_path / "mixed.mgf", MIXED)
    (tmp_path / "spectra.txt").write_text("x")
    argv = [a.format(hf=tiny[2], tmp=tmp_path) for a in args] + ["--out", str(tmp_path / "e.npy")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nexa-embed: error:") and message in err and "\n" not in err


def test_out_of_range_and_truncated_spectra_are_counted(tiny):
    """The tiny model takes 32 peaks and m/z in [0, 2000): more peaks, or larger m/z, are said, not silent."""
    from megatron_nexa.inference import embed_records

    cfg, _, hf = tiny
    many = (np.arange(1, 41) * 10.0, np.arange(1, 41, dtype=float), 500.0)
    heavy_peak = (np.array([100.0, 2500.0]), np.array([1.0, 2.0]), 2600.0)
    heavy_precursor = (np.array([100.0, 200.0]), np.array([1.0, 2.0]), 2100.0)
    fine = (np.array([100.0, 200.0]), np.array([1.0, 2.0]), 300.0)
    with pytest.warns(UserWarning) as caught:
        emb, records = embed_records([many, heavy_peak, heavy_precursor, fine], hf)
    messages = " | ".join(str(w.message) for w in caught)
    assert "1 spectra have more valid peaks than the model takes (32)" in messages and "row 0" in messages
    assert "2 spectra have m/z or precursor m/z outside the model's range [0, 2000)" in messages
    assert "row 1" in messages and "row 2" in messages and "row 3" not in messages
    assert np.isfinite(emb).all() and records[0].note.startswith("40 valid peaks") and records[3].note == ""


def test_exported_model_rejects_non_finite_inputs(tiny):
    """NaN anywhere, padding included, would make every token NaN: the HF model says which input and row."""
    from transformers import AutoModel

    from megatron_nexa.data.tokenize import single_row, stack_rows

    model = AutoModel.from_pretrained(str(tiny[2]), trust_remote_code=True).eval()
    token_type, mz, intensity, segment = stack_rows([single_row(np.array([100.0]), np.array([1.0]), 200.0, 32)] * 2)
    with torch.no_grad():
        assert torch.isfinite(model(token_type, mz, intensity, segment).last_hidden_state).all()
        mz[1, -1] = float("nan")  # a padding position
        with pytest.raises(ValueError, match=r"mz has non-finite values .*row 1"):
            model(token_type, mz, intensity, segment)
        mz[1, -1], intensity[0, 2] = 0.0, float("inf")
        with pytest.raises(ValueError, match=r"intensity has non-finite values .*row 0"):
            model(token_type, mz, intensity, segment)


def test_embed_accepts_the_training_model(tiny):
    """The megatron_nexa model (``.cfg``, a tensor out of its encoder) embeds as its export does."""
    from megatron_nexa.inference import embed

    cfg, model, hf = tiny
    spectra = [(s["mz"], s["intensity"], s["pepmass"]) for s in GOOD.values()]
    expected = embed(spectra, hf)
    np.testing.assert_allclose(embed(spectra, model, preprocessing=PreprocessSettings()), expected, atol=1e-6)
    with pytest.warns(UserWarning, match="carries no preprocessing settings"):
        np.testing.assert_allclose(embed(spectra, model.encoder), expected, atol=1e-6)
    with pytest.raises(TypeError, match="nexa-convert to-hf"):
        embed(spectra, torch.nn.Linear(2, 2))


def test_embed_accepts_the_megatron_core_training_model(parallel, tiny):
    """The model pretraining builds (megatron-core encoder), with the same weights, embeds as the export does."""
    from megatron_nexa.inference import embed
    from megatron_nexa.model.encoder import NexaEncoder
    from megatron_nexa.model.pretraining import NexaSpecForPretraining

    cfg, reference, hf = tiny
    training = NexaSpecForPretraining(cfg, NexaEncoder(cfg)).train()
    missing, unexpected = training.load_state_dict(reference.state_dict(), strict=False)
    assert not unexpected and all(k.endswith("_extra_state") for k in missing)
    spectra = [(s["mz"], s["intensity"], s["pepmass"]) for s in GOOD.values()]
    got = embed(spectra, training, preprocessing=PreprocessSettings())
    np.testing.assert_allclose(got, embed(spectra, hf), atol=1e-5)
    assert training.training  # left in the mode it was given in


# embed() and the encoder alone (AutoModel), then the whole pretraining model with its loading info, then the encoder
# from a copy of the export with one stray weight; a marker line on stderr between the quiet part and the last
QUIET_LOAD = textwrap.dedent("""
    import json, shutil, sys
    import numpy as np
    from safetensors.torch import load_file, save_file
    import torch
    from transformers import AutoModel, AutoModelForPreTraining
    import megatron_nexa

    hf, stray = sys.argv[1], sys.argv[2]
    emb = megatron_nexa.embed([(np.array([100.0, 150.0]), np.array([1.0, 0.5]), 300.0)], model=hf)
    _, encoder = AutoModel.from_pretrained(hf, trust_remote_code=True, output_loading_info=True)
    _, whole = AutoModelForPreTraining.from_pretrained(hf, trust_remote_code=True, output_loading_info=True)
    print(json.dumps({"rows": len(emb), "encoder": {k: sorted(map(str, v)) for k, v in encoder.items()},
                      "pretraining": {k: sorted(map(str, v)) for k, v in whole.items()}}), flush=True)
    print("---- stray", file=sys.stderr, flush=True)
    shutil.copytree(hf, stray)
    state = load_file(f"{stray}/model.safetensors")
    state["encoder.stray.weight"] = torch.zeros(2)
    save_file(state, f"{stray}/model.safetensors", metadata={"format": "pt"})
    AutoModel.from_pretrained(stray, trust_remote_code=True)
""")


def test_encoder_loads_from_a_pretraining_export_without_a_load_report(tiny, tmp_path):
    """An export holds the pretraining heads; AutoModel (the encoder, what embed() loads) leaves them out without
    transformers' load report listing them as UNEXPECTED; AutoModelForPreTraining still loads every weight; a weight
    that is neither the encoder's nor a head's is still reported."""
    out = subprocess.run([sys.executable, "-c", QUIET_LOAD, str(tiny[2]), str(tmp_path / "stray")], cwd=REPO,
                         env=child_env(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1"), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    quiet, _, stray = out.stderr.partition("---- stray")
    assert "LOAD REPORT" not in quiet + out.stdout and "UNEXPECTED" not in quiet + out.stdout, quiet[-3000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["rows"] == 1
    assert info["encoder"]["missing_keys"] == [] and info["encoder"]["unexpected_keys"] == []
    assert all(not v for v in info["pretraining"].values()), info["pretraining"]  # no missing, unexpected, mismatched
    assert "LOAD REPORT" in stray and "stray.weight" in stray and "UNEXPECTED" in stray, stray[-3000:]
