"""One process group for DeepSpeed and megatron-core, set up explicitly (no global args)."""
import os
import socket

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

from megatron_nexa.compat.megatron import apply_cpu_shims


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_to_single_process() -> None:
    """Plain ``python`` (no launcher): the environment of a group of one, on a free local port."""
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))


def init_process_group(backend: str | None = None) -> None:
    """Join the launcher's group (``RANK``/``WORLD_SIZE`` …) or form a one-process group."""
    if dist.is_initialized():
        return
    default_to_single_process()
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend)


def init_parallel(seed: int) -> None:
    """Data parallel only (TP = PP = 1, as the card plans), megatron RNG tracker, CPU shims if needed."""
    init_process_group()
    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(tensor_model_parallel_size=1, pipeline_model_parallel_size=1)
    on_cpu = apply_cpu_shims()
    torch.manual_seed(seed)
    model_parallel_cuda_manual_seed(seed, inference_rng_tracker=on_cpu, force_reset_rng=True)


def all_reduce_host(t: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """All-reduce a small host tensor (metrics, flags) on any backend; NCCL only takes CUDA tensors."""
    if dist.get_backend() != "nccl":
        dist.all_reduce(t, op=op)
        return t
    on_device = t.to(torch.cuda.current_device())
    dist.all_reduce(on_device, op=op)
    t.copy_(on_device.cpu())
    return t
