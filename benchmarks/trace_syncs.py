"""Where a profiled training step leaves the GPU idle: device-time per stream and the host syncs behind it.

    python benchmarks/trace_syncs.py TRACE.json[.gz] [--steps 3] [--reduce OUT.json.gz]

Reads a Chrome trace from ``gpu_step.py --profile V --profile-stack N`` (Python stacks recorded). Prints
(1) the GPU's busy time (union of kernels, copies and memsets) per stream and overall, per step;
(2) the largest device-time items per stream; (3) every host call that waits for the device (stream/device
synchronise, and blocking copies), grouped by the Python frames that made it, with the time the compute
stream then sat idle until the host launched its next kernel. ``--reduce`` writes a copy that keeps
only the Python frames around those calls (the full trace is mostly Python events), small enough to keep.
"""
import argparse
import bisect
import collections
import gzip
import json
from pathlib import Path

DEVICE_CATS = ("kernel", "gpu_memcpy", "gpu_memset")
WAITS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
BLOCKING_COPY_US = 20  # a cudaMemcpyAsync that holds the host longer than this waited for the device
NOISE = ("torch/nn/modules/module.py", "torch/utils/_contextlib", "deepspeed/utils/nvtx", "<built-in method _call_impl")


def load(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return json.load(f)["traceEvents"]


def union_us(intervals) -> float:
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        total += max(0.0, e - max(s, end))
        end = max(end, e)
    return total


def is_wait(e: dict) -> bool:
    return e.get("cat") == "cuda_runtime" and (
        e["name"] in WAITS or (e["name"] == "cudaMemcpyAsync" and e["dur"] > BLOCKING_COPY_US))


def enclosing(e: dict, python_by_tid: dict) -> list[dict]:
    """The Python frames and ops on ``e``'s thread that were running when ``e`` was, outermost first."""
    return sorted((p for p in python_by_tid[e["tid"]] if p["ts"] <= e["ts"] <= p["ts"] + p["dur"]),
                  key=lambda p: p["ts"])


def label(frames: list[dict], n: int = 5) -> tuple[str, ...]:
    return tuple(p["name"][:100] for p in frames if not p["name"].startswith(NOISE))[-n:]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trace", type=Path)
    p.add_argument("--steps", type=int, default=3, help="training steps in the trace (gpu_step profiles 3)")
    p.add_argument("--reduce", type=Path, help="write the trace with only the Python frames around waits")
    args = p.parse_args(argv)
    events = load(args.trace)
    per_step = 1e3 * args.steps  # µs in the trace -> ms per step

    device = [e for e in events if e.get("cat") in DEVICE_CATS]
    streams = collections.defaultdict(list)
    for e in device:
        streams[e["args"].get("stream")].append(e)
    if not device:
        print(f"{args.trace}: no device events (a CPU run?)")
        return 0
    span = max(e["ts"] + e["dur"] for e in device) - min(e["ts"] for e in device)
    print(f"device span {span / per_step:.1f} ms/step (profiler overhead included), busy "
          f"{union_us((e['ts'], e['ts'] + e['dur']) for e in device) / per_step:.1f} ms/step")
    for stream, es in sorted(streams.items(), key=lambda kv: -len(kv[1])):
        busy = union_us((e["ts"], e["ts"] + e["dur"]) for e in es)
        print(f"  stream {stream}: busy {busy / per_step:.1f} ms/step, {len(es) // args.steps} items/step")
        by_name = collections.Counter()
        for e in es:
            by_name[e["name"][:80]] += e["dur"]
        for name, us in by_name.most_common(8):
            print(f"    {us / per_step:7.2f} ms  {name}")

    compute = sorted(max(streams.values(), key=len), key=lambda e: e["ts"])
    starts = [e["ts"] for e in compute]
    python_by_tid = collections.defaultdict(list)
    for e in events:
        if e.get("cat") in ("python_function", "cpu_op") and e.get("ph") == "X":
            python_by_tid[e["tid"]].append(e)
    waits = [(w, enclosing(w, python_by_tid)) for w in events if is_wait(w)]
    blocked, idle, count = collections.Counter(), collections.Counter(), collections.Counter()
    for w, frames in waits:
        key = (w["name"],) + label(frames)
        back = w["ts"] + w["dur"]
        i = bisect.bisect_left(starts, back)
        blocked[key] += w["dur"]
        count[key] += 1
        if i < len(compute):  # the compute stream's idle time from the host's return to its next launch
            idle[key] += compute[i]["ts"] - back
    print(f"\nhost waits for the device: {len(waits) / args.steps:.0f} per step; by calling frames "
          "(host blocked / compute stream idle after it, ms per step):")
    for key in sorted(blocked, key=lambda k: -idle[k])[:12]:  # a wait after the last kernel: idle 0
        print(f"  {blocked[key] / per_step:6.2f} / {idle[key] / per_step:6.2f}  x{count[key] / args.steps:.0f}  "
              + "  <  ".join(reversed(key)))

    if args.reduce:
        keep_python = {id(p) for _, frames in waits for p in frames}
        kept = [e for e in events if e.get("cat") != "python_function" or id(e) in keep_python]
        with gzip.open(args.reduce, "wt") as f:
            json.dump({"traceEvents": kept}, f)
        print(f"\nwrote {args.reduce}: {len(kept)} of {len(events)} events")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
