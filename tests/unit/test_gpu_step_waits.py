"""gpu_step.host_waits: the CUDA branch, run here with torch's sync debug mode stood in for (no GPU in CI)."""
import warnings

import torch

from benchmarks import gpu_step


def test_host_waits_counts_sync_warnings_by_line(monkeypatch):
    modes = []
    monkeypatch.setattr(gpu_step, "CUDA", True)
    monkeypatch.setattr(gpu_step, "sync", lambda: None)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)

    def step():
        for _ in range(3):
            warnings.warn("called a synchronizing CUDA operation")  # what torch warns in "warn" mode
        warnings.warn("an unrelated warning")

    found = gpu_step.host_waits(step)
    assert list(found.values()) == [3] and next(iter(found)).startswith("test_gpu_step_waits.py:")
    assert modes == ["warn", "default"], "the debug mode is switched off again"
    monkeypatch.setattr(gpu_step, "CUDA", False)
    assert gpu_step.host_waits(step) is None
