"""The two megatron-core 0.16.1 shims needed to run on a machine without CUDA.

1. ``GlobalMemoryBuffer.get_tensor`` allocates on ``torch.cuda.current_device()`` (used by the local
   ``DotProductAttention``): on CPU it allocates on the CPU.
2. Activation recompute saves and restores the CUDA RNG state through
   ``tensor_parallel.random._get_cuda_rng_state`` / ``_set_cuda_rng_state``: on CPU they become no-ops
   (the CPU RNG, which drives dropout there, is saved and restored by megatron already).

Applied only when ``torch.cuda.is_available()`` is False; idempotent; ``remove_cpu_shims`` undoes them.
"""
import operator
from functools import reduce

import torch
from megatron.core import utils as mcore_utils
from megatron.core.tensor_parallel import random as mcore_random


def _cpu_get_tensor(self, tensor_shape, dtype, name, mem_alloc_context=None):
    required = reduce(operator.mul, tensor_shape, 1)
    buf = self.buffer.get((name, dtype))
    if buf is None or buf.numel() < required:
        buf = self.buffer[(name, dtype)] = torch.empty(required, dtype=dtype, requires_grad=False)
    return buf[:required].view(*tensor_shape)


def _cpu_get_rng_state(*args, **kwargs):
    return torch.empty(0, dtype=torch.uint8)


def _cpu_set_rng_state(*args, **kwargs):
    return None


# (owner, attribute, CPU replacement, original)
_SHIMS = [
    (mcore_utils.GlobalMemoryBuffer, "get_tensor", _cpu_get_tensor, mcore_utils.GlobalMemoryBuffer.get_tensor),
    (mcore_random, "_get_cuda_rng_state", _cpu_get_rng_state, mcore_random._get_cuda_rng_state),
    (mcore_random, "_set_cuda_rng_state", _cpu_set_rng_state, mcore_random._set_cuda_rng_state),
]


def shims_applied() -> bool:
    return all(getattr(owner, name) is shim for owner, name, shim, _ in _SHIMS)


def apply_cpu_shims() -> bool:
    """Patch megatron-core for CPU if there is no CUDA. Returns whether the shims are in place."""
    if torch.cuda.is_available():
        return False
    for owner, name, shim, _ in _SHIMS:
        setattr(owner, name, shim)
    return True


def remove_cpu_shims() -> None:
    for owner, name, _, original in _SHIMS:
        setattr(owner, name, original)
