import json

import numpy as np
import pytest

from megatron_nexa.finetune.report import compare, table

BASE = {"baseline (training mean per group)": {"mae": 146.6, "coverage_68": 0.75, "coverage_95": 0.97}}


def write_run(root, name, mae_rows, random_init, seed, keys):
    folder = root / name
    folder.mkdir()
    rows = np.asarray(mae_rows, float)
    (folder / "results.json").write_text(json.dumps({"task": "rt", "mae": rows.mean(), "coverage_68": 0.7,
                                                     "coverage_95": 0.95, **BASE}))
    (folder / "finetune.json").write_text(json.dumps({"task": "rt", "random_init": random_init, "seed": seed}))
    np.savez(folder / "rows.npz", abs_error=rows, in_68=np.ones_like(rows), in_95=np.ones_like(rows),
             keys=np.asarray(keys, str))


def test_table_groups_seeds_by_encoder_and_pairs_the_encoders(tmp_path):
    rng = np.random.default_rng(0)
    keys = np.repeat([f"K{i}" for i in range(100)], 3)  # 300 rows, 3 spectra per structure
    for seed in (0, 1):
        write_run(tmp_path, f"finetune_rt_pretrained_s{seed}", 100 + rng.normal(0, 5, 300), False, seed, keys)
        write_run(tmp_path, f"finetune_rt_random_s{seed}", 150 + rng.normal(0, 5, 300), True, seed, keys)
    lines = table(tmp_path).splitlines()
    assert lines[1].split()[:3] == ["rt", "pretrained", "2"] and lines[2].split()[:3] == ["rt", "random-init", "2"]
    assert "146.6 / 0.750 / 0.970  baseline (training mean per group)" in lines[1]
    assert "±" in lines[1]  # two seeds: a spread
    [record] = compare(tmp_path)
    assert record["seeds"] == [0, 1] and record["rows"] == 300
    assert record["difference"] == pytest.approx(-50, abs=2) and record["verdict"] == "better"
    assert "better" in lines[-1]


def test_noise_alone_is_within_noise_and_unpaired_runs_are_not_compared(tmp_path):
    rng = np.random.default_rng(1)
    keys = np.repeat([f"K{i}" for i in range(100)], 2)
    write_run(tmp_path, "finetune_rt_pretrained", 100 + rng.normal(0, 20, 200), False, 0, keys)
    write_run(tmp_path, "finetune_rt_random", 100 + rng.normal(0, 20, 200), True, 0, keys)
    write_run(tmp_path, "finetune_rt_random_s7", 100 + rng.normal(0, 20, 200), True, 7, keys)  # no partner
    [record] = compare(tmp_path)
    assert record["seeds"] == [0] and record["verdict"] == "within noise"


def test_runs_that_scored_different_rows_are_refused(tmp_path):
    write_run(tmp_path, "finetune_rt_pretrained", [1.0, 2.0], False, 0, ["A", "B"])
    write_run(tmp_path, "finetune_rt_random", [1.0, 2.0], True, 0, ["A", "C"])
    with pytest.raises(ValueError, match="different test rows"):
        compare(tmp_path)
