#!/usr/bin/env python
"""Two runs' logged losses, step by step: the check that a change left training bit-identical.

    python tools/compare_runs.py runs/demo_before runs/demo [--key loss]

Prints the steps both logged, the largest absolute difference and the first differing step; exit 0 when every shared
step's value is identical, 1 otherwise, 2 when a run has no metrics.jsonl or the two share no step.
"""
import argparse
import json
import sys
from pathlib import Path


def logged(run: Path, key: str) -> dict[int, float]:
    """The last value of ``key`` at each step (a resumed run logs some steps again)."""
    values = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if key in record:
            values[record["step"]] = record[key]
    return values


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_a", type=Path)
    p.add_argument("run_b", type=Path)
    p.add_argument("--key", default="loss", help="metric to compare (default: loss)")
    args = p.parse_args(argv)
    try:
        a, b = logged(args.run_a, args.key), logged(args.run_b, args.key)
    except OSError as e:
        print(f"compare_runs: {e}", file=sys.stderr)
        return 2
    shared = sorted(set(a) & set(b))
    if not shared:
        print(f"compare_runs: {args.run_a} and {args.run_b} share no step with {args.key!r}", file=sys.stderr)
        return 2
    differing = [s for s in shared if a[s] != b[s]]
    largest = max(abs(a[s] - b[s]) for s in shared)
    print(f"{args.key}: {len(shared)} steps in both ({shared[0]}..{shared[-1]}), {len(differing)} differ, "
          f"largest absolute difference {largest:.3g}" + (f", first at step {differing[0]}" if differing else ""))
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
