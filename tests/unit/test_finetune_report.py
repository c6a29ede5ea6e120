import json

from megatron_nexa.finetune.report import table


def test_table_lists_each_run_with_its_encoder_and_baseline(tmp_path):
    runs = {"finetune_rt_pretrained": {"task": "rt", "mae": 120.04, "coverage_68": 0.7, "coverage_95": 0.95,
                                       "baseline (training mean per group)": {"mae": 146.6, "coverage_68": 0.75,
                                                                              "coverage_95": 0.97}},
            "finetune_rt_random": {"task": "rt", "mae": 150.0, "coverage_68": 0.6, "coverage_95": 0.9,
                                   "baseline (training mean per group)": {"mae": 146.6, "coverage_68": 0.75,
                                                                          "coverage_95": 0.97}}}
    for name, r in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(r))
    lines = table(tmp_path).splitlines()
    assert len(lines) == 3 and lines[1].split()[:2] == ["rt", "pretrained"] and lines[2].split()[:2] == ["rt", "random"]
    assert "120.0 / 0.700 / 0.950" in lines[1] and "146.6 / 0.750 / 0.970  baseline (training mean per group)" in lines[1]
