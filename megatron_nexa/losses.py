"""Named loss terms and their weighted sum (model card §4). Metrics ride along, detached."""
import torch
import torch.nn.functional as F

from megatron_nexa.config import LossConfig

IGNORE = -100  # target value for an m/z outside the binned range: excluded from the loss


def _accuracy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of the non-ignored targets predicted right, 0 if all are ignored. Written without a boolean
    index or ``.any()``: each would make the host wait for the GPU every step."""
    keep = target != IGNORE
    hit = (logits.argmax(-1) == target) & keep
    return (hit.sum() / keep.sum().clamp_min(1)).float().detach()


def masked_peak_terms(mz_logits, intensity_logits, mz_target, intensity_target) -> dict[str, torch.Tensor]:
    """Cross-entropy on the m/z bin and the intensity bin of each masked peak."""
    return {
        "masked_mz": F.cross_entropy(mz_logits.float(), mz_target, ignore_index=IGNORE),
        "masked_intensity": F.cross_entropy(intensity_logits.float(), intensity_target, ignore_index=IGNORE),
        "masked_mz_acc": _accuracy(mz_logits, mz_target),
        "masked_intensity_acc": _accuracy(intensity_logits, intensity_target),
    }


def retention_order_terms(logit: torch.Tensor, label: torch.Tensor) -> dict[str, torch.Tensor]:
    """Binary cross-entropy on "A elutes before B" (label 1.0)."""
    return {
        "retention_order": F.binary_cross_entropy_with_logits(logit.float(), label.float()),
        "retention_order_acc": ((logit > 0).float() == label.float()).float().mean().detach(),
    }


def retention_order_logits(batch, retention_logit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of every retention-order pair in the batch. A joined pair's logit is its [CLS]
    score; a separate pair's is ``r(A) - r(B)``, each spectrum scored from its own [CLS] (RankNet), so the
    head learns an elution score per spectrum."""
    pick = retention_logit.index_select
    logit = torch.cat([pick(0, batch.pair_rows), pick(0, batch.ro_first) - pick(0, batch.ro_second)])
    return logit, torch.cat([batch.ro_label.index_select(0, batch.pair_rows),
                             batch.ro_label.index_select(0, batch.ro_first)])


def info_nce(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float) -> dict[str, torch.Tensor]:
    """Symmetric InfoNCE: row i of ``z_a`` and ``z_b`` are positives, every other row a negative."""
    logits = z_a.float() @ z_b.float().T / temperature
    target = torch.arange(len(z_a), device=z_a.device)
    loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    return {"contrastive": loss, "contrastive_acc": (logits.argmax(-1) == target).float().mean().detach()}


def cls_spectrum_terms(cls_mz_logits: torch.Tensor, peak_bin: torch.Tensor, peak_weight: torch.Tensor
                       ) -> dict[str, torch.Tensor]:
    """Cross-entropy of the [CLS] m/z distribution against the row's binned spectrum (sqrt intensity per bin,
    summed and normalised: the binned baseline's input). Masked peaks count too; ``cls_spectrum_acc`` is the
    fraction of rows whose top bin holds a peak."""
    keep = peak_bin != IGNORE
    target = torch.zeros_like(cls_mz_logits, dtype=torch.float32)
    target.scatter_add_(1, torch.where(keep, peak_bin, 0), torch.where(keep, peak_weight.float(), 0.0))
    target = target / target.sum(-1, keepdim=True).clamp_min(1e-12)
    loss = -(target * F.log_softmax(cls_mz_logits.float(), -1)).sum(-1).mean()
    hit = target.gather(1, cls_mz_logits.argmax(-1, keepdim=True)) > 0
    return {"cls_spectrum": loss, "cls_spectrum_acc": hit.float().mean().detach()}


def weighted_total(terms: dict[str, torch.Tensor], cfg: LossConfig) -> torch.Tensor:
    """Sum of the present loss terms times their configured weights (``*_acc`` metrics excluded)."""
    weights = {"masked_mz": cfg.masked_mz, "masked_intensity": cfg.masked_intensity,
               "retention_order": cfg.retention_order, "contrastive": cfg.contrastive,
               "cls_spectrum": cfg.cls_spectrum}
    present = [weights[name] * value for name, value in terms.items() if name in weights]
    if not present:
        raise ValueError("no loss term to optimise: terms were " + ", ".join(terms))
    return torch.stack(present).sum()


def pretraining_terms(batch, out, cfg: LossConfig) -> dict[str, torch.Tensor]:
    """All named terms for one batch (``data.batch.Batch``) and model output (``PretrainingOutput``).

    Rows and tokens are picked with the batch's host-computed indices and every branch depends on a shape,
    never on a GPU value, so the host never waits for the GPU here (``tests/unit/test_host_sync.py``).
    The total includes ``0 x`` every head output that no term used this batch, so each parameter is in the
    graph on every rank and step: ZeRO-3's partitioned gradient reduction expects that.
    """
    terms = masked_peak_terms(out.mz_logits, out.intensity_logits, batch.at_masked(batch.mz_target),
                              batch.at_masked(batch.intensity_target))
    unused = [out.retention_logit.sum(), out.contrastive.sum(), out.cls_mz_logits.sum()]
    if cfg.retention_order > 0:
        logit, label = retention_order_logits(batch, out.retention_logit)
        if len(logit):
            terms.update(retention_order_terms(logit, label))
    if cfg.cls_spectrum > 0:
        rows = batch.cls_rows  # single spectra with peaks: a pair's [CLS] is about the pair
        if len(rows):
            pick = [t.index_select(0, rows) for t in (out.cls_mz_logits, batch.peak_bin, batch.peak_weight)]
            terms.update(cls_spectrum_terms(*pick))
    if cfg.contrastive > 0 and len(batch.view_first) >= 2:
        terms.update(info_nce(out.contrastive.index_select(0, batch.view_first),
                              out.contrastive.index_select(0, batch.view_second), cfg.contrastive_temperature))
    terms["loss"] = weighted_total(terms, cfg) + 0.0 * torch.stack(unused).sum()
    return terms
