"""benchmarks/trace_syncs.py on the recorded H100 trace (3B width, micro-batch 128, ZeRO-3; RESULTS.md §8)."""
import subprocess
import sys

from tests.conftest import REPO

TRACE = REPO / "benchmarks/results/2026-11-27-h100-gpu-check/run3_trace_3b_mb128_reduced.json.gz"


def test_reads_device_busy_time_and_the_host_waits_behind_idle_gpu(tmp_path):
    out = subprocess.run([sys.executable, "benchmarks/trace_syncs.py", str(TRACE), "--reduce", str(tmp_path / "r.json.gz")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "busy 114.3 ms/step" in out.stdout  # union of both streams; the compute stream alone:
    assert "stream 7: busy 112.4 ms/step" in out.stdout
    waits = out.stdout.split("host waits for the device:")[1]
    assert waits.startswith(" 64 per step")
    assert "deepspeed/utils/timer.py(231): start" in waits  # the throughput timer's sync at forward start
    assert "megatron_nexa/losses.py(10): _accuracy" in waits
    again = subprocess.run([sys.executable, "benchmarks/trace_syncs.py", str(tmp_path / "r.json.gz")],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.stdout.split("\nwrote")[0] == out.stdout.split("\nwrote")[0]  # reducing loses no answer
