"""What we rely on inside megatron-core 0.16 beyond its public API.

- CPU shims, applied only without CUDA (``apply_cpu_shims``; idempotent, ``remove_cpu_shims`` undoes them):
  ``GlobalMemoryBuffer.get_tensor`` allocates on ``torch.cuda.current_device()`` (used by the local
  ``DotProductAttention``), so on CPU it allocates on the CPU; activation recompute saves and restores the CUDA
  RNG state through the private ``tensor_parallel.random._get_cuda_rng_state`` / ``_set_cuda_rng_state``, which
  become no-ops (the CPU RNG, which drives dropout there, megatron saves and restores already).
- ``PositionalHiddenStates`` and ``quiet_unknown_mlp``: how ``TransformerBlock`` calls, and ``TransformerLayer``
  builds, a layer.
- ``OwnProductAtTP1``: the linears' private ``_forward_impl``.
"""
import contextlib
import logging
import operator
from functools import reduce

import torch

from megatron_nexa.compat import require

SUPPORTED = ">=0.16.1,<0.17"
VERSION = require("megatron-core", SUPPORTED)  # before importing megatron itself

from megatron.core import utils as mcore_utils  # noqa: E402
from megatron.core.tensor_parallel import random as mcore_random  # noqa: E402
from megatron.core.transformer.transformer_layer import TransformerLayer  # noqa: E402


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


class PositionalHiddenStates:
    """Mixed in before ``TransformerLayer``: ``TransformerBlock`` calls each layer with keyword arguments only, and
    module hooks that attach to a call's positional inputs (DeepSpeed ZeRO-3's, which release a leaf module's
    parameters after its backward pass) then find none. ``hidden_states`` is passed on positionally."""

    def __call__(self, *args, **kwargs):
        if not args and "hidden_states" in kwargs:
            args = (kwargs.pop("hidden_states"),)
        return super().__call__(*args, **kwargs)


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


@contextlib.contextmanager
def quiet_unknown_mlp():
    """``TransformerLayer.__init__`` logs "Unknown MLP type" for any MLP class but megatron's own, then builds it
    with the default tensor-parallel group, the one it would have passed: once per layer, nothing to say."""
    logger = logging.getLogger(TransformerLayer.__module__)
    unknown_mlp = _DropMessage("Unknown MLP type")
    logger.addFilter(unknown_mlp)
    try:
        yield
    finally:
        logger.removeFilter(unknown_mlp)


class OwnProductAtTP1:
    """Mixed in before ``ColumnParallelLinear`` or ``RowParallelLinear``, whose product runs through the private
    ``_forward_impl``: ``LinearWithGradAccumulationAndAsyncCommunication``, a Python autograd Function that checks for
    communication, fused accumulation and deferred gradients in every call. At tensor-parallel size 1 with none of
    those asked for, the subclass's ``own_product(input, weight, bias)`` runs instead. Otherwise megatron's runs, on
    ``megatron_input(input)``, with the layer's own ``tp_group``: ``RowParallelLinear.forward`` passes ``None``,
    which the product looks up again, with a DeprecationWarning on rank 0, on every call (under ``torch.compile``
    a graph break inside a context manager, which sent the whole linear back to eager)."""

    _MEGATRON_ONLY = ("gradient_accumulation_fusion", "allreduce_dgrad", "sequence_parallel", "grad_output_buffer")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tp_size = 1 if self.tp_group is None else self.tp_group.size()

    def own_product(self, input, weight, bias):
        raise NotImplementedError

    def megatron_input(self, input):
        return input

    def _forward_impl(self, input, weight, *args, **kwargs):
        if self.tp_size == 1 and not args and not any(kwargs.get(k) for k in self._MEGATRON_ONLY):
            return self.own_product(input, weight, kwargs.get("bias"))
        if kwargs.get("tp_group") is None:
            kwargs["tp_group"] = self.tp_group
        return super()._forward_impl(self.megatron_input(input), weight, *args, **kwargs)
