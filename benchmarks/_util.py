"""Shared helpers for benchmarks: best-of-N timing and peak RSS of a child process."""
import json
import resource
import subprocess
import sys
import time


def best_of(fn, repeats: int = 3) -> float:
    """Seconds of the fastest of ``repeats`` calls (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def child_peak_rss_mb(code: str) -> float:
    """Run ``code`` in a fresh interpreter; return its peak resident memory (MB)."""
    out = subprocess.run([sys.executable, "-c", code + "\nimport resource, json, sys\n"
                          "sys.stdout.write(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))"],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1]) / 1024


def rss_now_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
