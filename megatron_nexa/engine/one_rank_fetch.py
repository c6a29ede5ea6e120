"""ZeRO-3 on a single rank without a host sync per fetched module (DeepSpeed 0.19).

With one rank there is nothing to gather: DeepSpeed "fetches" a partitioned parameter through
``partition_parameters.NoGatherHandle``/``NoGatherCoalescedHandle``, whose ``.to(device)`` of the rank's
whole shard is a no-op when the shard already lives on the GPU, and whose ``wait()`` then calls
``current_stream().synchronize()``: the host waits for the GPU to drain, once per fetched module (47 times
a step for the 36-layer 3B model; 1.11x of the step on an H100, benchmarks/RESULTS.md §20). The coordinator
orders the compute stream after its fetch stream anyway. With 16 ranks the real all-gather handle is used,
which has no such sync, so the pilot never meets it; one-GPU runs (the demo, fine-tuning, the GPU check) do.

``install`` replaces the two ``wait``s with ones that only do the bookkeeping, and fall back to DeepSpeed's
own whenever the sync guards something: a shard kept elsewhere (parameter offload: a non-blocking copy from
host memory) or a quantised shard. ``uninstall`` puts DeepSpeed's back. The originals ride on the
replacements (``deepspeed_wait``), so installing twice is a no-op and no state lives in this module.
"""
import torch

HANDLES = ("NoGatherHandle", "NoGatherCoalescedHandle")


def needs_host_sync(params, device: torch.device) -> bool:
    """Whether DeepSpeed's sync guards real work for these parameters: a shard that is not already on
    ``device`` (offloaded) or is quantised gets copied or dequantised by the fetch."""
    return any(p.ds_tensor.device != device or hasattr(p.ds_tensor, "ds_quant_scale") for p in params)


def _without_sync(cls, original):
    from deepspeed.accelerator import get_accelerator
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    prefix = f"_{cls.__name__}__"  # the handles' name-mangled private attributes
    coalesced = cls.__name__ == "NoGatherCoalescedHandle"

    def wait(self, **kwargs) -> None:
        if getattr(self, prefix + "complete"):
            return
        params = getattr(self, prefix + "params") if coalesced else [getattr(self, prefix + "param")]
        if needs_host_sync(params, torch.device(get_accelerator().current_device_name())):
            return original(self, **kwargs)
        for param in params:
            param.ds_status = ZeroParamStatus.AVAILABLE
        setattr(self, prefix + "complete", True)

    wait.deepspeed_wait = original
    return wait


def install() -> None:
    from deepspeed.runtime.zero import partition_parameters as pp

    for name in HANDLES:
        cls = getattr(pp, name)
        if not hasattr(cls.wait, "deepspeed_wait"):
            cls.wait = _without_sync(cls, cls.wait)


def uninstall() -> None:
    from deepspeed.runtime.zero import partition_parameters as pp

    for name in HANDLES:
        cls = getattr(pp, name)
        cls.wait = getattr(cls.wait, "deepspeed_wait", cls.wait)


def installed() -> bool:
    from deepspeed.runtime.zero import partition_parameters as pp

    return all(hasattr(getattr(pp, name).wait, "deepspeed_wait") for name in HANDLES)
