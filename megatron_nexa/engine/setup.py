"""Build everything a run needs, in order: process group → megatron parallel state → model (under
ZeRO-3's partitioned init) → AdamW + schedule → DeepSpeed engine. One config object flows down."""
import os
import warnings
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from megatron_nexa.compat import deepspeed as ds_compat
from megatron_nexa.config import RunConfig
from megatron_nexa.engine.ds_config import bf16_enabled, load_ds_config, reconcile, with_leaf_modules, zero_stage
from megatron_nexa.engine.optim import WarmupCosine, build_optimizer
from megatron_nexa.model.encoder import NexaEncoder
from megatron_nexa.model.pretraining import NexaSpecForPretraining


@dataclass
class Built:
    cfg: RunConfig
    engine: object  # deepspeed.DeepSpeedEngine
    scheduler: WarmupCosine
    device: torch.device
    ds_config: dict
    one_rank_fetch: bool = False  # ZeRO-3 on one rank, fetching without DeepSpeed's host sync (compat.deepspeed)


# Known, harmless warnings from inside DeepSpeed / megatron-core that would flood every rank's log.
for message in (r"`torch.distributed.(all_gather_into_tensor|reduce_scatter_tensor)` is deprecated",
                r"full scope is deprecated", r".*Transformer Engine and Apex are not installed.*"):
    warnings.filterwarnings("ignore", message=message)


def init_distributed(seed: int, timeout_s: int = 1800) -> None:
    """DeepSpeed's process group (gloo on CPU, NCCL on GPUs), then megatron's parallel state on it.
    ``timeout_s`` bounds every collective, so a rank that died or wedged fails the job rather than hangs it."""
    import deepspeed

    from megatron_nexa.engine.distributed import default_to_single_process, init_parallel

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        ds_compat.skip_shm_comm_build()
    default_to_single_process()
    if torch.cuda.is_available():
        # before any CUDA allocation: megatron initialises weights on the *current* device, and NCCL
        # binds each rank to it; without this every rank of a node would start on GPU 0
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo",
                                   timeout=timedelta(seconds=timeout_s))
    init_parallel(seed)


def build(cfg: RunConfig, ds_config_path: str) -> Built:
    import deepspeed

    init_distributed(cfg.train.seed, cfg.train.collective_timeout_s)
    ds, cfg = reconcile(load_ds_config(ds_config_path), cfg, dist.get_world_size(), source=str(ds_config_path))
    one_rank = zero_stage(ds) == 3 and dist.get_world_size() == 1
    if one_rank:
        ds_compat.OneRankFetch.install()  # DeepSpeed's one-rank fetch drains the GPU per module
    dtype = torch.bfloat16 if bf16_enabled(ds) else torch.float32
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    with deepspeed.zero.Init(config_dict_or_path=ds, enabled=zero_stage(ds) == 3):
        model = NexaSpecForPretraining(cfg.model, NexaEncoder(cfg.model, params_dtype=dtype))
    ds = with_leaf_modules(ds, model, source=str(ds_config_path))
    if cfg.train.compile:
        model.encoder.compile_layers()
    if dtype == torch.bfloat16 and zero_stage(ds) != 3:
        model = model.to(torch.bfloat16)  # megatron's torch-norm fallback is built in fp32
    optimizer = build_optimizer(model, cfg.optim)
    engine, _, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, config=ds,
        lr_scheduler=lambda opt: WarmupCosine(opt, cfg.optim, cfg.train.train_steps))
    torch.manual_seed(cfg.train.seed + dist.get_rank())  # dropout differs across ranks
    return Built(cfg, engine, scheduler, torch.device(engine.device), ds, one_rank)


def destroy(engine) -> None:
    """``engine.destroy()``, and the references to it that DeepSpeed's ZeRO-3 keeps in module globals
    (``compat.deepspeed.release_zero3_references``), so that a process can build engine after engine
    (benchmarks, sweeps, notebooks) without running out of memory."""
    module = engine.module
    engine.destroy()
    ds_compat.release_zero3_references(module)
