"""benchmarks/gpu_step.py is run on a GPU machine only now and then: keep it working on CPU (tiny model,
numbers meaningless) so a lent GPU's minutes are not spent on a broken script."""
import json
import subprocess
import sys

from tests.conftest import REPO, child_env


VARIANTS = ["amp", "zero3", "amp_encoder", "zero3_full", "zero1", "zero3_compile_layers", "amp_gas16", "zero3_gas16"]


def test_gpu_step_runs_every_kind_of_variant_on_cpu(tmp_path):
    out = tmp_path / "g.json"
    run = subprocess.run([sys.executable, "benchmarks/gpu_step.py", "--model", "tiny", "--layers", "2",
                          "--micro-batch", "4", "--variants", *VARIANTS, "--steps", "2", "--warmup", "1",
                          "--matmul-size", "128", "--json", str(out), "--profile", "zero3", "amp", "--profile-stack", "4",
                          "--host-profile", "zero3_gas16", "--profile-out", str(tmp_path / "p.txt")],
                         cwd=REPO, env=child_env(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1"),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == VARIANTS
    assert all("error" not in r and r["step_ms"] > 0 and r["tflops"] > 0 for r in rows), rows
    assert all(0 < r["host_ms"]["forward"] <= r["phases_ms"]["forward"] for r in rows), rows
    # every update timed with its micro-batches: the AMP baseline updates once per accumulation, as the engine does
    assert [(r["timed_calls"], r["timed_updates"]) for r in rows] == [(2, 2)] * 6 + [(16, 1)] * 2, rows
    for r in rows:  # what nexa-plan needs to size an engine row, recorded with it
        assert (r["plan_settings"] is None) == r["variant"].startswith("amp"), r
        assert r["plan_settings"] is None or r["plan_gib"] > 0
    # ZeRO-3 replaces F.linear process-wide; a plain variant after it is still timed on torch's own
    assert rows[1]["f_linear"] == "deepspeed.runtime.zero.linear" and rows[2]["f_linear"] == "torch", rows
    assert "x amp" in run.stdout and (tmp_path / "p.txt").read_text().count("variant zero3,") == 1
    assert (tmp_path / "p.txt").read_text().count("variant amp,") == 1
    trace = tmp_path / "p_zero3.trace.json.gz"
    assert "Input Shapes" in (tmp_path / "p.txt").read_text() and trace.exists()
    host = (tmp_path / "p.txt").read_text().split("# host: tiny x2 layers, variant zero3_gas16, 3 forwards")
    assert len(host) == 2 and "tottime" in host[1] and "fetch_sub_module" in host[1], host[-1][:2000]
    read = subprocess.run([sys.executable, "benchmarks/trace_syncs.py", str(trace)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert read.returncode == 0 and "no device events" in read.stdout, read.stderr[-2000:]
