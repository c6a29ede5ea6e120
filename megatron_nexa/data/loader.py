"""DataLoaders for pretraining: sources from the config, the resumable sampler, vectorised collate."""
import torch
from torch.utils.data import DataLoader

from megatron_nexa.config import RunConfig
from megatron_nexa.data.batch import collate
from megatron_nexa.data.dataset import PretrainingDataset
from megatron_nexa.data.sampler import PretrainingSampler
from megatron_nexa.data.source import SpectraSource


def build_dataset(cfg: RunConfig, split: str) -> PretrainingDataset:
    if not cfg.data.sources:
        raise ValueError("data.sources is empty: name at least one dataset version directory")
    sources = [SpectraSource(s.path, split, cfg.data.cache_dir) for s in cfg.data.sources]
    return PretrainingDataset(sources, [s.weight for s in cfg.data.sources], cfg, cfg.train.seed)


def build_loader(dataset: PretrainingDataset, cfg: RunConfig, dp_rank: int, dp_size: int,
                 consumed_samples: int = 0, train: bool = True) -> DataLoader:
    """Train: shuffled stream with the configured pair/view mix. Eval: the split in order, singles only."""
    sampler = PretrainingSampler(
        num_samples=len(dataset), micro_batch_size=cfg.train.micro_batch_size, dp_rank=dp_rank, dp_size=dp_size,
        seed=cfg.train.seed, consumed_samples=consumed_samples,
        pair_fraction=cfg.data.pair_fraction if train else 0.0,
        view_fraction=cfg.data.view_fraction if train else 0.0, shuffle=train)
    workers = cfg.data.num_workers
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
                      pin_memory=torch.cuda.is_available())  # Batch.pin_memory: asynchronous copies to the GPU
