"""A set of 64-bit spectrum hashes at 8 bytes per entry (a Python set costs ~60).

Sorted numpy runs merged like a binary counter (an LSM tree): inserting n hashes costs O(n log n)
overall and a membership test is one ``searchsorted`` per run (at most log2 n runs).
"""
import numpy as np


class HashSet:
    def __init__(self):
        self.runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(r) for r in self.runs)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        found = np.zeros(len(hashes), dtype=bool)
        for run in self.runs:
            pos = np.searchsorted(run, hashes)
            found |= run[np.minimum(pos, len(run) - 1)] == hashes
        return found

    def add_new(self, hashes: np.ndarray) -> np.ndarray:
        """Insert ``hashes``; return a mask of those seen for the first time (in order, within the call too)."""
        hashes = np.asarray(hashes, dtype=np.uint64)
        _, first = np.unique(hashes, return_index=True)
        new = np.zeros(len(hashes), dtype=bool)
        new[first] = True
        new &= ~self.contains(hashes)
        run = np.sort(hashes[new])
        while self.runs and len(self.runs[-1]) <= len(run):
            run = np.sort(np.concatenate([self.runs.pop(), run]), kind="mergesort")
        if len(run):
            self.runs.append(run)
        return new
