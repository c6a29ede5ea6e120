"""DataLoaders for pretraining: sources from the config, the resumable sampler, vectorised collate.

With ``ignore_stop_signals`` the worker processes ignore SIGTERM, SIGUSR1 and SIGINT. Launchers and Slurm signal a
rank's whole process group, workers included, and a worker killed by the signal fails the rank's next batch, so
the trainer could not save. The trainer alone handles them. Such workers end when their iterator is released (or
their parent exits), not on the SIGTERM that multiprocessing sends at interpreter exit: release the iterator first.
"""
import signal

import torch
from torch.utils.data import DataLoader

from megatron_nexa.config import ConfigError, RunConfig
from megatron_nexa.data.batch import collate
from megatron_nexa.data.dataset import PretrainingDataset
from megatron_nexa.data.sampler import PretrainingSampler
from megatron_nexa.data.source import SpectraSource
from megatron_nexa.data.manifest import MissingSplit, load_with_splits

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


def check_sources(cfg: RunConfig) -> None:
    """Every data source opens and has the splits the run reads: a config error before any process group starts."""
    if not cfg.data.sources:
        raise ConfigError("data.sources is empty: name at least one dataset version directory", "data.sources")
    for i, source in enumerate(cfg.data.sources):
        name = f"data.sources[{i}].path"
        try:
            load_with_splits(source.path, (cfg.data.train_split, cfg.data.valid_split))
        except MissingSplit as e:
            raise ConfigError(f"{name}: {e}", name) from None
        except (OSError, ValueError) as e:  # missing directory or manifest, unreadable manifest
            raise ConfigError(f"{name}: {source.path} is not a readable dataset version ({e})", name) from None


def build_dataset(cfg: RunConfig, split: str) -> PretrainingDataset:
    if not cfg.data.sources:
        raise ValueError("data.sources is empty: name at least one dataset version directory")
    sources = [SpectraSource(s.path, split, cfg.data.cache_dir) for s in cfg.data.sources]
    return PretrainingDataset(sources, [s.weight for s in cfg.data.sources], cfg, cfg.train.seed)


def _worker_ignores_stop_signals(worker_id: int) -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)  # also discards one that arrived while blocked (see ``iterate``)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def iterate(loader: DataLoader):
    """``iter(loader)`` with the stop signals blocked while its workers start, so that none can die of one in the
    moment before it ignores it; a signal meant for the trainer is delivered to it once they have started."""
    if loader.num_workers == 0:
        return iter(loader)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def build_loader(dataset: PretrainingDataset, cfg: RunConfig, dp_rank: int, dp_size: int,
                 consumed_samples: int = 0, train: bool = True, ignore_stop_signals: bool = False) -> DataLoader:
    """Train: shuffled stream with the configured pair/view mix. Eval: the split in order, singles only.

    The loader draws its workers' base seed from its own generator, not torch's global one: the global
    generator drives dropout, and a draw from it at ``iter()`` would make a resumed run's dropout differ."""
    sampler = PretrainingSampler(
        num_samples=len(dataset), micro_batch_size=cfg.train.micro_batch_size, dp_rank=dp_rank, dp_size=dp_size,
        seed=cfg.train.seed, consumed_samples=consumed_samples,
        pair_fraction=cfg.data.pair_fraction if train else 0.0,
        view_fraction=cfg.data.view_fraction if train else 0.0, shuffle=train)
    workers = cfg.data.num_workers
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                      prefetch_factor=4 if workers else None,
                      worker_init_fn=_worker_ignores_stop_signals if workers and ignore_stop_signals else None,
                      generator=torch.Generator().manual_seed(cfg.train.seed + dp_rank),
                      pin_memory=torch.cuda.is_available())  # Batch.pin_memory: asynchronous copies to the GPU
