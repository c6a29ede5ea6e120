"""The training step's model and loss code never makes the host wait for the GPU: a wait stops the host launching
work until the GPU has caught up, and at the pilot's micro-batch the host bounds the forward (docs/performance.md)."""
import pytest
import torch

from megatron_nexa.data.batch import INDEX_FIELDS, collate
from megatron_nexa.tokens import TokenType
from tests.host_waits import HostWaits
from tests.spectra import ALL_TERMS, mixed_batch


@pytest.fixture
def model(parallel, tiny_cfg):
    from megatron_nexa.model.encoder import NexaEncoder
    from megatron_nexa.model.pretraining import NexaSpecForPretraining

    torch.manual_seed(0)
    return NexaSpecForPretraining(tiny_cfg.model, NexaEncoder(tiny_cfg.model)).train()


def test_forward_losses_and_backward_never_wait(model, tiny_cfg):
    from megatron_nexa.losses import pretraining_terms

    batch = mixed_batch(tiny_cfg)
    with HostWaits() as waits:
        terms = pretraining_terms(batch, model(*batch.model_inputs()), ALL_TERMS)
        terms["loss"].backward()
    assert {"masked_mz", "retention_order", "contrastive", "cls_spectrum"} <= set(terms), "every term computed"
    assert not waits.found, f"ops that make the host wait for the GPU: {dict(waits.found)}"


def test_the_detector_finds_what_waits(model, tiny_cfg):
    batch = mixed_batch(tiny_cfg)
    with HostWaits() as waits:
        out = model(*batch.model_inputs()[:4])  # no masked_index: the model finds the [MASK] tokens itself
        out.mz_logits[out.mz_logits[:, 0] > 0].sum().item()
    found = " | ".join(waits.found)
    assert "aten.nonzero.default at tokens.py" in found  # masked_positions, called by the model
    assert "aten.index.Tensor" in found and "aten._local_scalar_dense" in found


def test_host_indices_pick_what_boolean_indexing_did(model, tiny_cfg):
    batch = mixed_batch(tiny_cfg)
    masked = batch.token_type == TokenType.MASK
    assert torch.equal(batch.mz_target.flatten()[batch.masked_index], batch.mz_target[masked])
    assert batch.pair_rows.tolist() == [0] and batch.ro_first.tolist() == [1] and batch.ro_second.tolist() == [2]
    assert batch.view_first.tolist() == [3, 5] and batch.view_second.tolist() == [4, 6]
    assert batch.cls_rows.tolist() == [1, 2, 3, 4, 5, 6, 7], "the joined pair's [CLS] is not a spectrum target"
    model.eval()
    with torch.no_grad():
        given, found = model(*batch.model_inputs()), model(*batch.model_inputs()[:4])
        expected = model.masked_peak(given.hidden[masked])[0]
    torch.testing.assert_close(given.mz_logits, found.mz_logits, rtol=0, atol=0)
    torch.testing.assert_close(given.mz_logits, expected)


def test_collate_computes_indices_and_names_bad_groups(tiny_cfg):
    rows = [{f: t[i].numpy() for f, t in vars(mixed_batch(tiny_cfg)).items() if f not in INDEX_FIELDS}
            for i in range(8)]
    batch = collate([[r] for r in rows])
    assert batch.view_first.tolist() == [3, 5] and batch.masked_index.dtype == torch.int64
    moved = batch.to("cpu")
    assert all(torch.equal(getattr(moved, f), getattr(batch, f)) for f in INDEX_FIELDS)
    rows[6]["view_group"] = rows[6]["view_group"] * 0 + 9  # view 5 left with one row
    with pytest.raises(ValueError, match="contrastive: view_group must hold each value on exactly two rows"):
        collate([[r] for r in rows])
