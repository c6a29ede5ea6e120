"""Which ops would make the host wait for a GPU, found on any device (CI has no GPU).

An op waits when its output's size or a Python value depends on tensor data: ``nonzero`` (behind a boolean
index or ``masked_select``), ``.item()``/``float()``/``bool()``, ``torch.equal``, ``unique``. On CUDA the host
then stops launching work until the GPU has caught up (docs/performance.md). ``torch.cuda.set_sync_debug_mode``
is the check on a GPU (``tests/gpu``); this one runs in CI too.
"""
import traceback
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
WAITING_OPS = {aten.nonzero.default, aten.masked_select.default, aten._local_scalar_dense.default,
               aten.equal.default, aten.is_nonzero.default, aten._unique2.default, aten.unique_dim.default,
               aten.unique_consecutive.default, aten.repeat_interleave.Tensor}
INDEXING_OPS = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}


def _bool_index(func, args) -> bool:
    return func in INDEXING_OPS and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] or ())


class HostWaits(TorchDispatchMode):
    """Counts the waiting ops run inside it, each with the innermost project frame that called it."""

    def __init__(self, project: str = "megatron_nexa"):
        super().__init__()
        self.project, self.found = project, Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in WAITING_OPS or _bool_index(func, args):
            frames = [f for f in traceback.extract_stack() if self.project in f.filename]
            where = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno} {frames[-1].line}" if frames else "?"
            self.found[f"{func} at {where}"] += 1
        return func(*args, **(kwargs or {}))
