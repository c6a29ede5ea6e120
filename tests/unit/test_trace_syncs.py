"""benchmarks/trace_syncs.py on a small synthetic Chrome trace whose answers are worked out by hand: the GPU's
busy time (overlaps counted once) per stream and overall, the largest items, and every host call that waited for
the device with the Python frames that made it and the compute stream's idle time after it; ``--reduce`` keeps
what those answers need."""
import gzip
import json
import re
import subprocess
import sys

from tests.conftest import REPO

MS = 1000  # the trace's unit is µs


def kernel(name, stream, start_ms, dur_ms, cat="kernel"):
    return {"ph": "X", "cat": cat, "name": name, "ts": start_ms * MS, "dur": dur_ms * MS, "pid": 0, "tid": stream,
            "args": {"stream": stream}}


def host(name, start_ms, dur_ms, cat="python_function", tid=1):
    return {"ph": "X", "cat": cat, "name": name, "ts": start_ms * MS, "dur": dur_ms * MS, "pid": 1, "tid": tid}


TIMER = "deepspeed/utils/timer.py(231): start"
ACCURACY = "megatron_nexa/losses.py(10): _accuracy"
EVENTS = [
    # compute stream 7: 100-150 and 140-170 overlap (70 ms busy), then 400-500
    kernel("gemm_kernel", 7, 100, 50), kernel("elementwise", 7, 140, 30), kernel("gemm_kernel", 7, 400, 100),
    # side stream 9: a copy 160-200 and a memset 190-210 (50 ms busy); all streams together: 100-210, 400-500
    kernel("Memcpy DtoD", 9, 160, 40, cat="gpu_memcpy"), kernel("Memset", 9, 190, 20, cat="gpu_memset"),
    # a stream sync inside _accuracy > (module call, not a label) > timer.start > aten::item, 220-250: the compute
    # stream then idles until its next kernel at 400
    host(ACCURACY, 200, 60), host("torch/nn/modules/module.py(1775): _call_impl", 205, 50), host(TIMER, 210, 40),
    host("aten::item", 215, 40, cat="cpu_op"), host("cudaStreamSynchronize", 220, 30, cat="cuda_runtime"),
    # a copy that held the host 40 µs (a wait) inside step(), 50.00-50.04: idle until 100
    host("train.py(5): step", 40, 20), {**host("cudaMemcpyAsync", 50, 0, cat="cuda_runtime"), "dur": 40},
    # a copy of 10 µs (not a wait) and a launch (never one)
    {**host("cudaMemcpyAsync", 300, 0, cat="cuda_runtime"), "dur": 10}, host("cudaLaunchKernel", 310, 0.005, "cuda_runtime"),
    # a blocking copy on another thread with no Python around it, 350-355: idle until 400
    host("cudaMemcpyAsync", 350, 5, cat="cuda_runtime", tid=2),
    # a device sync after the last kernel: blocked 1 ms, no idle time after it
    host("cudaDeviceSynchronize", 600, 1, cat="cuda_runtime"),
    # Python no wait happened in
    host("unrelated.py(1): f", 700, 5),
]


def run(*args):
    out = subprocess.run([sys.executable, "benchmarks/trace_syncs.py", *map(str, args)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def waits(stdout: str) -> list[tuple[float, float, int, str]]:
    """(host blocked ms, compute idle ms, count, calling chain) per printed wait line, in printed order."""
    lines = stdout.split("host waits for the device:")[1].split("\nwrote")[0].splitlines()[1:]
    found = [re.match(r"\s+([\d.]+) /\s+([\d.]+)\s+x(\d+)\s+(.*)$", line) for line in lines if line.strip()]
    return [(float(m[1]), float(m[2]), int(m[3]), m[4]) for m in found]


def test_busy_time_largest_items_and_the_waits_behind_an_idle_gpu(tmp_path):
    trace = tmp_path / "t.json.gz"
    with gzip.open(trace, "wt") as f:
        json.dump({"traceEvents": EVENTS}, f)
    out = run(trace, "--steps", "1", "--reduce", tmp_path / "r.json.gz")
    assert "device span 400.0 ms/step" in out and "busy 210.0 ms/step" in out, out
    assert "stream 7: busy 170.0 ms/step, 3 items/step" in out and "stream 9: busy 50.0 ms/step, 2 items/step" in out
    assert re.search(r"150\.00 ms  gemm_kernel", out) and re.search(r"30\.00 ms  elementwise", out), out
    assert "host waits for the device: 4 per step" in out, out
    assert waits(out) == [
        (30.0, 150.0, 1, f"aten::item  <  {TIMER}  <  {ACCURACY}  <  cudaStreamSynchronize"),
        (0.04, 49.96, 1, "train.py(5): step  <  cudaMemcpyAsync"),
        (5.0, 45.0, 1, "cudaMemcpyAsync"),
        (1.0, 0.0, 1, "cudaDeviceSynchronize"),
    ], out
    assert "wrote" in out and "of 17 events" in out

    reduced = json.loads(gzip.open(tmp_path / "r.json.gz", "rt").read())["traceEvents"]
    names = {e["name"] for e in reduced}
    assert "unrelated.py(1): f" not in names and {ACCURACY, TIMER, "train.py(5): step"} <= names
    assert len(reduced) == len(EVENTS) - 1
    assert run(tmp_path / "r.json.gz", "--steps", "1") == out.split("\nwrote")[0]  # reducing loses no answer


def test_per_step_figures_divide_by_the_steps_traced(tmp_path):
    trace = tmp_path / "t.json"
    trace.write_text(json.dumps({"traceEvents": EVENTS}))
    out = run(trace, "--steps", "2")
    assert "busy 105.0 ms/step" in out and "stream 7: busy 85.0 ms/step, 1 items/step" in out, out
    assert "host waits for the device: 2 per step" in out
    assert waits(out)[0][:2] == (15.0, 75.0)
