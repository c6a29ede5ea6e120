"""What we rely on inside DeepSpeed 0.19 beyond its public API. The engine applies these; the model never imports
this module (nor DeepSpeed).

- ``skip_shm_comm_build``: on CPU, keep DeepSpeed from JIT-compiling its shared-memory comm extension.
- ``OneRankFetch``: ZeRO-3 on one rank without a host sync per fetched module.
- ``release_zero3_references``: what ``engine.destroy()`` leaves referenced from ZeRO-3's module globals.

DeepSpeed itself is imported inside the functions: importing this module costs nothing.
"""
import torch

from megatron_nexa.compat import require

SUPPORTED = ">=0.19,<0.20"
VERSION = require("deepspeed", SUPPORTED)


def skip_shm_comm_build() -> None:
    """On first init DeepSpeed JIT-compiles its shared-memory comm extension (30-80 s); gloo is enough on CPU.
    ``deepspeed.ops.__compatible_ops__`` is the table DeepSpeed consults before building an op."""
    import deepspeed

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


class OneRankFetch:
    """With one rank there is nothing to gather: ZeRO-3 "fetches" a partitioned parameter through
    ``partition_parameters.NoGatherHandle``/``NoGatherCoalescedHandle``, whose ``.to(device)`` of the rank's whole
    shard is a no-op when the shard already lives on the GPU, and whose ``wait()`` then calls
    ``current_stream().synchronize()``: the host waits for the GPU to drain, once per fetched module
    (docs/decisions/0003-one-rank-fetch.md). The coordinator orders the compute stream after its fetch stream
    anyway. With several ranks the real all-gather handle is used, which has no such sync.

    ``install`` replaces the two ``wait``s with ones that only do the bookkeeping, and fall back to DeepSpeed's
    own whenever the sync guards something: a shard kept elsewhere (parameter offload: a non-blocking copy from
    host memory) or a quantised shard. ``uninstall`` puts DeepSpeed's back. The originals ride on the
    replacements (``deepspeed_wait``), so installing twice is a no-op and no state lives here.
    """

    HANDLES = ("NoGatherHandle", "NoGatherCoalescedHandle")

    @staticmethod
    def needs_host_sync(params, device: torch.device) -> bool:
        """Whether DeepSpeed's sync guards real work for these parameters: a shard that is not already on
        ``device`` (offloaded) or is quantised gets copied or dequantised by the fetch."""
        return any(p.ds_tensor.device != device or hasattr(p.ds_tensor, "ds_quant_scale") for p in params)

    @staticmethod
    def _without_sync(handle_cls, original):
        from deepspeed.accelerator import get_accelerator
        from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

        prefix = f"_{handle_cls.__name__}__"  # the handles' name-mangled private attributes
        coalesced = handle_cls.__name__ == "NoGatherCoalescedHandle"

        def wait(self, **kwargs) -> None:
            if getattr(self, prefix + "complete"):
                return
            params = getattr(self, prefix + "params") if coalesced else [getattr(self, prefix + "param")]
            if OneRankFetch.needs_host_sync(params, torch.device(get_accelerator().current_device_name())):
                return original(self, **kwargs)
            for param in params:
                param.ds_status = ZeroParamStatus.AVAILABLE
            setattr(self, prefix + "complete", True)

        wait.deepspeed_wait = original
        return wait

    @classmethod
    def install(cls) -> None:
        from deepspeed.runtime.zero import partition_parameters as pp

        for name in cls.HANDLES:
            handle = getattr(pp, name)
            if not hasattr(handle.wait, "deepspeed_wait"):
                handle.wait = cls._without_sync(handle, handle.wait)

    @classmethod
    def uninstall(cls) -> None:
        from deepspeed.runtime.zero import partition_parameters as pp

        for name in cls.HANDLES:
            handle = getattr(pp, name)
            handle.wait = getattr(handle.wait, "deepspeed_wait", handle.wait)

    @classmethod
    def installed(cls) -> bool:
        from deepspeed.runtime.zero import partition_parameters as pp

        return all(hasattr(getattr(pp, name).wait, "deepspeed_wait") for name in cls.HANDLES)


def release_zero3_references(module: torch.nn.Module) -> None:
    """After ``engine.destroy()``: DeepSpeed 0.19's ZeRO-3 keeps each engine alive, with its optimiser state
    (GiBs at the 3B width), through two module-level references. The model stays on
    ``parameter_offload.FWD_MODULE_STACK``, pushed at set-up and never popped, and the parameter coordinator's
    ``lru_cache`` of which parameters to release is keyed on the engine's modules. Both are dropped here."""
    from deepspeed.runtime.zero import parameter_offload, partitioned_param_coordinator

    parameter_offload.FWD_MODULE_STACK[:] = [m for m in parameter_offload.FWD_MODULE_STACK if m is not module]
    coordinator = partitioned_param_coordinator.PartitionedParameterCoordinator
    for fn in vars(coordinator).values():  # the lru_cache sits inside DeepSpeed's NVTX wrapper
        for cell in getattr(fn, "__closure__", None) or ():
            if hasattr(cell.cell_contents, "cache_clear"):
                cell.cell_contents.cache_clear()
