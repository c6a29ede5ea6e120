"""benchmarks/retention_order_heldout.py draws its held-out pairs as training does (same run, |ΔRT| > margin, the
same pairs every time) and scores a model on them both ways, with a 95 % binomial interval."""
import json
import subprocess
import sys

import numpy as np
import torch

from megatron_nexa.data.source import SpectraSource
from tests.conftest import REPO, child_env


def heldout(massbank, *args):
    run = subprocess.run([sys.executable, "benchmarks/retention_order_heldout.py", "--data", str(massbank),
                          "--splits", "val", "--max-pairs", "300", *map(str, args)],
                         cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_heldout_pairs_follow_the_training_rules_and_are_scored_both_ways(massbank, tmp_path):
    from megatron_nexa.config import load_config
    from megatron_nexa.convert.to_hf import write_hf
    from megatron_nexa.model.pretraining import NexaSpecForPretraining
    from megatron_nexa.model.reference import ReferenceEncoder

    assert "pairs drawn: val 300" in heldout(massbank, "--pairs-out", tmp_path / "pairs.json")
    pairs = json.loads((tmp_path / "pairs.json").read_text())["val"]
    source = SpectraSource(massbank, "val")
    assert len(pairs) == 300
    for a, b, label in pairs:
        assert source.run[a] == source.run[b] >= 0 and abs(source.rt[a] - source.rt[b]) > 3.0
        assert label == float(source.rt[a] < source.rt[b])
    assert 0.4 < np.mean([p[2] for p in pairs]) < 0.6

    cfg = load_config(REPO / "configs/model/tiny.yaml").model
    torch.manual_seed(0)
    write_hf(NexaSpecForPretraining(cfg, ReferenceEncoder(cfg)).state_dict(), cfg, tmp_path / "hf")
    out = heldout(massbank, f"tiny={tmp_path / 'hf'}", "--out", tmp_path / "acc.json",
                  "--pairs-out", tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text())["val"] == pairs, "the same pairs every time"
    assert "| tiny | val | 300 |" in out
    result = json.loads((tmp_path / "acc.json").read_text())["tiny"]["val"]
    for way in ("joined", "separate"):
        r = result[way]
        half = 1.96 * np.sqrt(r["acc"] * (1 - r["acc"]) / 300)
        assert r["n"] == 300 and 0 <= r["acc"] <= 1 and np.isclose(r["hi"] - r["lo"], 2 * half), r
        assert np.isclose(r["acc"] * 300, round(r["acc"] * 300)), "a share of the 300 pairs"
