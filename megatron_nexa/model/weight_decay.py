"""Which parameters take weight decay: a property of the model that the optimiser and the communication plan share
(ZeRO-1/2 flatten and pad each optimiser group separately, so the groups size what they gather)."""
import torch


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: not on biases, norms or the input embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "norm" in name or ".embedding." in f".{name}":
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
