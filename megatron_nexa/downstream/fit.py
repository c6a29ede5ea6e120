"""A small, seeded mini-batch loop for heads on fixed inputs (frozen-encoder fine-tuning)."""
import torch


def fit(head: torch.nn.Module, tensors: tuple[torch.Tensor, ...], loss_fn, epochs: int = 30, lr: float = 1e-3,
        batch_size: int = 256, seed: int = 0, weight_decay: float = 1e-4) -> torch.nn.Module:
    """``loss_fn(head, *batch) -> scalar``; returns ``head`` in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(tensors[0])
    head.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(head, *(t[idx] for t in tensors)).backward()
            opt.step()
    return head.eval()
