import math
from types import SimpleNamespace

import pytest
import torch

from megatron_nexa.config import LossConfig
from megatron_nexa.data.batch import grouped_pairs
from megatron_nexa.losses import (IGNORE, cls_spectrum_terms, info_nce, masked_peak_terms, retention_order_logits,
                                  retention_order_terms, weighted_total)


def test_masked_peak_terms_and_ignore():
    logits = torch.zeros(4, 10)
    logits[0, 3] = logits[1, 5] = 10.0
    target = torch.tensor([3, 5, IGNORE, IGNORE])
    terms = masked_peak_terms(logits, logits[:, :4], target, torch.tensor([IGNORE, IGNORE, 1, 2]))
    assert terms["masked_mz_acc"] == 1.0
    assert terms["masked_mz"] < 1e-3
    assert terms["masked_intensity"] == pytest.approx(math.log(4), rel=1e-5)
    assert terms["masked_intensity_acc"] == 0.0  # rows 2, 3 predict bin 0, not 1 or 2
    half = masked_peak_terms(logits, logits[:, :4], torch.tensor([3, 4, IGNORE, IGNORE]), torch.full((4,), IGNORE))
    assert half["masked_mz_acc"] == 0.5 and half["masked_intensity_acc"] == 0.0  # all ignored: 0, not NaN


def test_retention_order_and_info_nce():
    terms = retention_order_terms(torch.tensor([5.0, -5.0, 5.0]), torch.tensor([1.0, 0.0, 0.0]))
    assert terms["retention_order_acc"] == pytest.approx(2 / 3)
    z = torch.nn.functional.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    aligned = info_nce(z, z, temperature=0.05)
    shuffled = info_nce(z, z.roll(1, 0), temperature=0.05)
    assert aligned["contrastive_acc"] == 1.0 and aligned["contrastive"] < shuffled["contrastive"]


def test_separate_pairs_score_each_spectrum_and_subtract():
    # row 0: a joined pair; rows 1/2 and 4/5: separate pairs (A before B, as collate emits them); row 3: single
    is_pair, ro_group = torch.tensor([True, False, False, False, False, False]), torch.tensor([-1, 9, 9, -1, 4, 4])
    first, second = grouped_pairs(ro_group, "ro_group")
    batch = SimpleNamespace(pair_rows=torch.nonzero(is_pair).flatten(), ro_first=first, ro_second=second,
                            ro_label=torch.tensor([1.0, 0.0, 0.0, 0.5, 1.0, 1.0]))
    score = torch.tensor([3.0, 1.0, 2.5, 7.0, 4.0, -1.0])
    logit, label = retention_order_logits(batch, score)
    assert logit.tolist() == [3.0, 5.0, -1.5] and label.tolist() == [1.0, 1.0, 0.0], "joined first, then groups"
    with pytest.raises(ValueError, match="exactly two rows"):
        grouped_pairs(torch.tensor([-1, 9, 9, -1, 4, -1]), "ro_group")
    with pytest.raises(ValueError, match="exactly two rows"):
        grouped_pairs(torch.tensor([7, 7, 7, -1]), "ro_group")


def test_weighted_total_uses_weights_not_metrics():
    terms = {"masked_mz": torch.tensor(2.0), "masked_intensity": torch.tensor(1.0),
             "retention_order": torch.tensor(3.0), "masked_mz_acc": torch.tensor(100.0)}
    assert weighted_total(terms, LossConfig(masked_mz=1.0, masked_intensity=0.5, retention_order=2.0)) == 8.5
    with pytest.raises(ValueError, match="no loss term"):
        weighted_total({"masked_mz_acc": torch.tensor(1.0)}, LossConfig())


def test_cls_spectrum_target_is_the_sqrt_intensity_binned_spectrum():
    peak_bin = torch.tensor([[2, 2, 5, IGNORE], [1, IGNORE, IGNORE, IGNORE]])
    weight = torch.tensor([[0.5, 0.5, 1.0, 0.0], [0.3, 0.0, 0.0, 0.0]])
    target = torch.zeros(2, 8)
    target[0, 2] = target[0, 5] = 0.5  # two peaks in bin 2 add up
    target[1, 1] = 1.0
    exact = cls_spectrum_terms(target.clamp_min(1e-9).log(), peak_bin, weight)
    entropy = -(target * target.clamp_min(1e-9).log()).sum(-1).mean()
    assert exact["cls_spectrum"] == pytest.approx(entropy.item(), abs=1e-6), "minimum = the target's entropy"
    uniform = cls_spectrum_terms(torch.zeros(2, 8), peak_bin, weight)
    assert uniform["cls_spectrum"] == pytest.approx(math.log(8), rel=1e-6)
    wrong = torch.zeros(2, 8)
    wrong[:, 7] = 10.0  # top bin holds no peak in either row
    assert exact["cls_spectrum_acc"] == 1.0 and cls_spectrum_terms(wrong, peak_bin, weight)["cls_spectrum_acc"] == 0.0
