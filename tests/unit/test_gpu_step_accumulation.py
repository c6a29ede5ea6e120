"""gpu_step's AMP baseline with accumulation updates as DeepSpeed's engine does: once per ``accumulation`` calls,
on the mean of the micro-batches' losses, so that ``amp_gas16`` and ``zero3_gas16`` time the same work."""
import torch

from benchmarks import gpu_step, gpu_variants
from benchmarks.train_step import synthetic_batch


def test_plain_update_only_at_the_accumulation_boundary():
    variant = gpu_variants.Variant(engine=False, accumulation=4)
    cfg = gpu_variants.variant_config("tiny", 1, 2, variant)
    assert cfg.train.global_batch_size == 4 * cfg.train.micro_batch_size
    model, (fwd, bwd, upd), _ = gpu_step.build_plain(cfg, variant)
    batch = synthetic_batch(cfg, cfg.train.micro_batch_size)
    weights = [p.detach().clone() for p in model.parameters()]

    def changed():
        return sum(not torch.equal(w, p) for w, p in zip(weights, model.parameters()))

    for _ in range(3):
        bwd(fwd(batch))
        upd()
    assert changed() == 0 and all(p.grad is not None for p in model.parameters() if p.requires_grad)
    bwd(fwd(batch))
    upd()
    assert changed() > 0 and all(p.grad is None for p in model.parameters())
    losses = []
    for v in (variant, gpu_variants.Variant(engine=False)):  # fresh models, the same weights (seeded)
        forward = gpu_step.build_plain(cfg, v)[1][0]
        torch.manual_seed(0)
        losses.append(forward(batch))
    assert torch.allclose(losses[0] * 4, losses[1])  # each micro-batch's loss carries 1/4 of the step
