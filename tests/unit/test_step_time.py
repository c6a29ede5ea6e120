"""The step-time prediction: measured compute found, the overlap range ordered, communication time scaling with the
bytes and the bandwidth, and ``nexa-plan``'s recommendation for the card's two setups, whose written preset starts."""
import json
from dataclasses import replace

import pytest

from megatron_nexa.cli.plan import main as nexa_plan
from megatron_nexa.comm_plan import CommSettings, comm_volume, inventory
from megatron_nexa.config import load_config
from megatron_nexa.cluster_plan import shipped_ds_configs
from megatron_nexa.step_time import LINKS, across_nodes_gbs, measured_compute, model_name, step_time
from tests.conftest import REPO
from tests.unit.test_presets import check_preset

CFG_3B = load_config(REPO / "configs/model/nexa_3b.yaml").model


def test_the_3b_compute_is_the_recorded_single_gpu_measurement():
    assert model_name(CFG_3B) == "nexa_3b"
    c = measured_compute("nexa_3b", CFG_3B, 32)
    assert c.micro_batch == 32 and 250 < c.micro_ms < 500, c  # forward + backward of 32 spectra on one H100/H200
    assert "gpu_step_3b_full.json" in c.source and c.update_ms_per_billion > 0 and c.host_ms_per_fetch > 0
    assert measured_compute("nexa_3b", replace(CFG_3B, num_layers=999), 32) is None  # rows of its depth only


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_overlap_range_is_ordered_and_communication_scales_with_bandwidth(stage):
    inv, compute = inventory(CFG_3B), measured_compute("nexa_3b", CFG_3B, 32)
    ds = shipped_ds_configs()[stage]
    settings = CommSettings.from_ds_config(ds)
    volume = comm_volume(inv, settings, 16)
    slow, fast = (step_time(volume, settings, inv, compute, 32, 1, bus, prefetch=True, overlap_comm=True)
                  for bus in (LINKS["hdr200"].bus_gbs, LINKS["ndr400"].bus_gbs))
    for t in (slow, fast):
        assert t.low_s <= t.likely_s <= t.high_s
    assert sum(slow.comm_s.values()) == pytest.approx(2 * sum(fast.comm_s.values()))  # HDR is half NDR
    assert sum(fast.comm_s.values()) == pytest.approx(sum(volume.wire_bytes().values()) / (LINKS["ndr400"].bus_gbs * 1e9))
    hidden_nothing = step_time(volume, settings, inv, compute, 32, 1, LINKS["ndr400"].bus_gbs, prefetch=False,
                               overlap_comm=False)
    assert hidden_nothing.likely_s >= fast.likely_s


def test_nexa_plan_recommends_a_stage_for_the_card_setups(capsys, tmp_path):
    nexa_plan(["--model", "configs/pretrain_3b.yaml"])
    pilot = capsys.readouterr().out
    assert "nvlink4 at 360 GB/s" in pilot and "recommended: ZeRO-" in pilot and "the card's ZeRO-3" in pilot, pilot
    nexa_plan(["--model", "configs/pretrain_7b.yaml", "--nodes", "4", "--gpus-per-node", "8", "--micro-batch", "16",
               "--fabric", "ndr400", "--write-config", str(tmp_path)])
    big = capsys.readouterr().out
    assert "ndr400 at 320 GB/s" in big and "recommended: ZeRO-" in big and "ZeRO-3 hpZ 8" in big, big
    preset = next(tmp_path.glob("*.env"))
    assert "NODES=4" in preset.read_text() and json.loads(next(tmp_path.glob("zero*.json")).read_text())
    check_preset(preset)  # the written preset reconciles at 32 GPUs (micro-batch 16 from the card's 512) and fits


def test_measured_bandwidth_replaces_the_table(capsys):
    nexa_plan(["--model", "configs/pretrain_7b.yaml", "--nodes", "2", "--gpus-per-node", "8", "--inter-gbps", "4"])
    out = capsys.readouterr().out
    assert "ndr400 at 4 GB/s" in out, out


@pytest.mark.parametrize("args, message", [
    (["--inter-gbps", "0"], "--inter-gbps must be a positive number"), (["--inter-gbps", "nan"], "not nan"),
    (["--micro-batch", "0"], "--micro-batch must be a positive number"), (["--mfu", "1.5"], "at most 1"),
    (["--write-config", "configs/pretrain_3b.yaml"], "is a file"),
    (["--ds-config", "/nonexistent.json"], "/nonexistent.json: not a DeepSpeed config"),
    (["--ds-config", "HPZ"], "zero_hpz_partition_size 3 does not divide the 16 ranks")])
def test_bad_options_are_one_line_errors(capsys, tmp_path, args, message):
    hpz = tmp_path / "hpz.json"
    hpz.write_text(json.dumps({"zero_optimization": {"stage": 3, "zero_hpz_partition_size": 3}}))
    with pytest.raises(SystemExit) as e:
        nexa_plan(["--model", "configs/pretrain_3b.yaml", *[str(hpz) if a == "HPZ" else a for a in args]])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_the_micro_batch_follows_the_global_batch_and_a_preset_must_keep_it(capsys, tmp_path):
    nexa_plan(["--model", "configs/pretrain_7b.yaml", "--nodes", "4", "--gpus-per-node", "8",
               "--write-config", str(tmp_path)])
    assert "micro-batch 16, accumulation 1 -> global batch 512" in capsys.readouterr().out
    assert "EXTRA_ARGS=--train.micro_batch_size=16" in next(tmp_path.glob("*.env")).read_text()
    for args, message in [(["--nodes", "3", "--gpus-per-node", "8"], "does not split over 24 GPUs"),
                          (["--micro-batch", "8", "--write-config", str(tmp_path / "x")], "the preset would not start")]:
        with pytest.raises(SystemExit):
            nexa_plan(["--model", "configs/pretrain_7b.yaml", *args])
        assert message in capsys.readouterr().err


def test_compiled_configs_use_the_compiled_measurements():
    cfg = load_config(REPO / "configs/pretrain_7b.yaml")
    assert cfg.train.compile
    c = measured_compute("nexa_7b", cfg.model, 32, compiled=True)
    assert c.micro_batch == 32 and "gelu-recompute" in c.source, c  # the whole 7B at 32, compiled (H200)
    assert measured_compute("nexa_7b", cfg.model, 32, compiled=False).micro_batch == 16  # eager: measured at 16 only


def test_hpz_gathers_run_at_the_nodes_bandwidth():
    inv, compute = inventory(CFG_3B), measured_compute("nexa_3b", CFG_3B, 32)
    ds = {**shipped_ds_configs()[3]}
    ds["zero_optimization"] = {**ds["zero_optimization"], "zero_hpz_partition_size": 8, "stage3_max_reuse_distance": 0}
    settings = CommSettings.from_ds_config(ds)
    volume = comm_volume(inv, settings, 32, grad_accum=2)
    assert volume.logged().keys() == {"all_gather_into_tensor", "reduce_scatter_tensor", "all_reduce"}
    slow, fast = (step_time(volume, settings, inv, compute, 16, 2, 40.0, True, True, group_gbs=g) for g in (40.0, 360.0))
    hpz = "all_gather_into_tensor (hpZ group)"
    assert slow.comm_s[hpz] == pytest.approx(9 * fast.comm_s[hpz])
    assert slow.comm_s["reduce_scatter_tensor"] == fast.comm_s["reduce_scatter_tensor"]


def test_a_ring_across_nodes_uses_every_nic_of_a_node_up_to_nvlink():
    ndr, nvlink, tcp = LINKS["ndr400"], LINKS["nvlink4"], LINKS["tcp25"]
    assert across_nodes_gbs(ndr, nvlink, 8) == pytest.approx(8 * ndr.bus_gbs)  # 320 GB/s
    assert across_nodes_gbs(ndr, nvlink, 16) == nvlink.bus_gbs  # more NICs than NVLink carries
    assert across_nodes_gbs(tcp, nvlink, 8) == tcp.bus_gbs  # one socket a node, whatever the GPUs
