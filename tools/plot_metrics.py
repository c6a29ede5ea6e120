#!/usr/bin/env python
"""metrics.jsonl → loss_curves.png:  python tools/plot_metrics.py runs/demo/metrics.jsonl [--out FILE]"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from megatron_nexa.plot import plot_metrics  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("metrics")
    p.add_argument("--out")
    args = p.parse_args()
    print(plot_metrics(args.metrics, args.out))
