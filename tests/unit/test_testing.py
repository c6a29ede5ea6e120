"""megatron_nexa.testing, shared by the tests and the benchmarks: ``host_waits``' CUDA branch (run here with torch's
sync debug mode stood in for: CI has no GPU) and ``synthetic_batch``'s masked share, which nexa-plan's memory for
the measured peaks assumes (tests/fixtures/gpu_peaks.json)."""
import warnings

import pytest
import torch

from megatron_nexa import testing
from megatron_nexa.tokens import TokenType


def test_host_waits_counts_sync_warnings_by_line(monkeypatch):
    modes = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)

    def step():
        for _ in range(3):
            warnings.warn("called a synchronizing CUDA operation")  # what torch warns in "warn" mode
        warnings.warn("an unrelated warning")

    found = testing.host_waits(step)
    assert list(found.values()) == [3] and next(iter(found)).startswith("test_testing.py:")
    assert modes == ["warn", "default"], "the debug mode is switched off again"

    def failing():
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        testing.host_waits(failing)
    assert modes[-2:] == ["warn", "default"], "switched off after a failing step too"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert testing.host_waits(step) is None


def test_synthetic_batch_masks_its_share_of_full_length_spectra(tiny_cfg):
    batch = testing.synthetic_batch(tiny_cfg, 64)
    assert batch.token_type.shape == (64, tiny_cfg.model.max_peaks + 2)
    assert (batch.token_type[:, :2] == torch.tensor([TokenType.CLS, TokenType.PREC])).all()
    assert not (batch.token_type == TokenType.PAD).any(), "every peak slot used"
    masked = (batch.token_type == TokenType.MASK).sum() / (batch.token_type.numel() - 2 * 64)
    assert abs(float(masked) - testing.MASKED_SHARE) < 0.03
    assert (batch.mz_target >= 0).sum() == (batch.token_type == TokenType.MASK).sum()
    again = testing.synthetic_batch(tiny_cfg, 64)
    assert torch.equal(batch.token_type, again.token_type) and torch.equal(batch.mz, again.mz)
    assert not torch.equal(batch.mz, testing.synthetic_batch(tiny_cfg, 64, seed=1).mz)
