"""Checkpoints: DeepSpeed's engine state + the run config + trainer state + every rank's RNG.

Layout: ``<run_dir>/checkpoints/step_NNNNNNNN/`` (DeepSpeed's files, ``config.yaml``, ``rng_rankNNNNN.pt``,
``COMPLETE``) and ``latest``, a one-line file naming the newest complete tag. ``latest`` is replaced
atomically and only after every rank has finished writing, so a kill during a save leaves the previous
checkpoint as ``latest``. Only the newest ``keep_last`` complete checkpoints are kept.
DeepSpeed does not save the torch RNG state; we do, per rank (tensors only, loaded with weights_only).
"""
import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
from megatron.core.tensor_parallel import get_cuda_rng_tracker

from megatron_nexa.config import RunConfig

LATEST = "latest"
COMPLETE = "COMPLETE"


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "tracker": get_cuda_rng_tracker().get_states()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    get_cuda_rng_tracker().set_states(state["tracker"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class Checkpointer:
    def __init__(self, run_dir: Path, keep_last: int):
        self.dir = Path(run_dir) / "checkpoints"
        self.keep_last = keep_last
        self.rank = dist.get_rank()

    def latest_tag(self) -> str | None:
        path = self.dir / LATEST
        if not path.exists():
            return None
        tag = path.read_text().strip()
        if not (self.dir / tag / COMPLETE).exists():
            raise RuntimeError(f"{path} names {tag!r}, which is not a complete checkpoint")
        return tag

    def save(self, engine, step: int, client_state: dict, cfg: RunConfig) -> str:
        tag = f"step_{step:08d}"
        engine.save_checkpoint(str(self.dir), tag=tag, client_state=client_state, save_latest=False)
        torch.save(_rng_state(), self.dir / tag / f"rng_rank{self.rank:05d}.pt")
        dist.barrier()
        if self.rank == 0:
            cfg.save(self.dir / tag / "config.yaml")
            (self.dir / tag / COMPLETE).write_text(f"{dist.get_world_size()}\n")
            tmp = self.dir / f".{LATEST}.tmp"
            tmp.write_text(tag + "\n")
            os.replace(tmp, self.dir / LATEST)  # the switch to the new checkpoint is atomic
            self._prune(keep=tag)
        dist.barrier()
        return tag

    def _prune(self, keep: str) -> None:
        complete = sorted(p.name for p in self.dir.glob("step_*") if (p / COMPLETE).exists())
        for name in complete[: -self.keep_last]:
            if name != keep:
                shutil.rmtree(self.dir / name, ignore_errors=True)
        for p in self.dir.glob("step_*"):
            if not (p / COMPLETE).exists():  # debris of a save that was killed
                shutil.rmtree(p, ignore_errors=True)

    def load(self, engine) -> dict | None:
        """Restore the newest complete checkpoint into ``engine``; return its client state (None if none)."""
        tag = self.latest_tag()
        if tag is None:
            return None
        saved_world = int((self.dir / tag / COMPLETE).read_text().split()[0])
        if saved_world != dist.get_world_size():
            raise RuntimeError(f"{self.dir / tag} was written by {saved_world} ranks, this run has "
                               f"{dist.get_world_size()}: ZeRO partitions optimizer state by rank, so resume with "
                               f"{saved_world} (or convert it with nexa-convert zero-to-torch and start anew)")
        path, client = engine.load_checkpoint(str(self.dir), tag=tag, load_optimizer_states=True,
                                              load_lr_scheduler_states=True)
        if path is None:
            raise RuntimeError(f"DeepSpeed could not load {self.dir / tag}")
        _set_rng_state(torch.load(self.dir / tag / f"rng_rank{self.rank:05d}.pt", weights_only=True))
        return client
