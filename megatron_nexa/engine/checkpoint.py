"""Checkpoints: DeepSpeed's engine state + the run config + trainer state + every rank's RNG.

Layout: ``<run_dir>/checkpoints/step_NNNNNNNN/`` (DeepSpeed's files, ``config.yaml``, ``rng_rankNNNNN.pt``,
``files.json``, ``COMPLETE``) and ``latest``. Once every rank has written, rank 0 records each file's size in
``files.json``, then writes ``COMPLETE``, then replaces ``latest`` (each atomically): a kill at any moment of a
save leaves the previous checkpoint whole.

A run resumes from the newest complete checkpoint whose files all have their recorded sizes, whatever
``latest`` says (it is kept for DeepSpeed's own tools): a missing ``latest`` never restarts a run from step 1,
and a truncated newest checkpoint is moved to ``checkpoints/rejected/`` with a warning naming the file, and
the one before it is used. If no complete checkpoint passes, the run refuses to start rather than overwrite them
(docs/decisions/0009-resume-from-newest-sound-checkpoint.md).
Only the newest ``keep_last`` complete checkpoints are kept.
DeepSpeed does not save the torch RNG state; we do, per rank (tensors only, loaded with weights_only).
"""
import json
import shutil
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from megatron.core.tensor_parallel import get_cuda_rng_tracker

from megatron_nexa.config import RunConfig
from megatron_nexa.engine.distributed import all_reduce_host
from megatron_nexa.fsutil import atomic_write_text

LATEST = "latest"
COMPLETE = "COMPLETE"
FILES = "files.json"
REJECTED = "rejected"


class CheckpointError(RuntimeError):
    """No checkpoint can be resumed from, although complete ones exist; the message names each and why."""


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


def file_sizes(tag_dir: Path) -> dict[str, int]:
    return {str(p.relative_to(tag_dir)): p.stat().st_size for p in sorted(tag_dir.rglob("*"))
            if p.is_file() and p.name not in (FILES, COMPLETE)}


def problem(tag_dir: Path) -> str | None:
    """Why ``tag_dir`` cannot be resumed from (naming the file), or None. A checkpoint without ``files.json``
    (written before sizes were recorded) is checked for its completeness marker only."""
    if not (tag_dir / COMPLETE).exists():
        return f"{tag_dir / COMPLETE} is missing"
    if not (tag_dir / FILES).exists():
        return None
    try:
        recorded = json.loads((tag_dir / FILES).read_text())
    except (OSError, ValueError) as e:
        return f"{tag_dir / FILES} is unreadable ({e})"
    for name, size in recorded.items():
        path = tag_dir / name
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != size:
            return f"{path} has {path.stat().st_size:,} bytes, {size:,} when saved (truncated or overwritten)"
    return None


class Checkpointer:
    def __init__(self, run_dir: Path, keep_last: int, warn: Callable[[str], None] = print):
        self.dir = Path(run_dir) / "checkpoints"
        self.keep_last = keep_last
        self.rank = dist.get_rank()
        self.warn = warn
        self.loaded: str | None = None

    def complete_tags(self) -> list[str]:
        return sorted(p.name for p in self.dir.glob("step_*") if (p / COMPLETE).exists())

    def latest_tag(self) -> str | None:
        """The checkpoint this run resumed from or last saved."""
        return self.loaded

    def save(self, engine, step: int, client_state: dict, cfg: RunConfig) -> str:
        tag = f"step_{step:08d}"
        if self.rank == 0:  # a tag written again (after falling back past it) is incomplete until it is rewritten
            (self.dir / tag / COMPLETE).unlink(missing_ok=True)
        dist.barrier()
        engine.save_checkpoint(str(self.dir), tag=tag, client_state=client_state, save_latest=False)
        torch.save(_rng_state(), self.dir / tag / f"rng_rank{self.rank:05d}.pt")
        dist.barrier()
        if self.rank == 0:
            atomic_write_text(self.dir / tag / "config.yaml", cfg.to_yaml())
            atomic_write_text(self.dir / tag / FILES, json.dumps(file_sizes(self.dir / tag), indent=0))
            atomic_write_text(self.dir / tag / COMPLETE, f"{dist.get_world_size()}\n")
            atomic_write_text(self.dir / LATEST, tag + "\n")
            self._prune(keep=tag)
        dist.barrier()
        self.loaded = tag
        return tag

    def _prune(self, keep: str) -> None:
        for name in self.complete_tags()[: -self.keep_last]:
            if name != keep:
                shutil.rmtree(self.dir / name, ignore_errors=True)
        for p in self.dir.glob("step_*"):
            if not (p / COMPLETE).exists():  # debris of a save that was killed
                shutil.rmtree(p, ignore_errors=True)

    def _set_aside(self, tag: str) -> Path:
        """Move a rejected checkpoint to ``rejected/``, under a name no earlier rejection of the same tag has taken."""
        (self.dir / REJECTED).mkdir(exist_ok=True)
        dest, n = self.dir / REJECTED / tag, 1
        while dest.exists():
            n += 1
            dest = self.dir / REJECTED / f"{tag}.{n}"
        shutil.move(str(self.dir / tag), str(dest))
        return dest

    def _choose(self) -> str | None:
        """The newest complete checkpoint that passes on every rank; newer ones that fail are moved aside."""
        tags = self.complete_tags()
        recorded = (self.dir / LATEST).read_text().strip() if (self.dir / LATEST).is_file() else None
        if tags and recorded != tags[-1]:
            said = f"names {recorded!r}" if recorded else "is missing"
            self.warn(f"{self.dir / LATEST} {said}; the newest complete checkpoint is {tags[-1]}")
        rejected = []
        for tag in reversed(tags):
            why = problem(self.dir / tag)
            ok = torch.tensor([0.0 if why else 1.0])
            all_reduce_host(ok, op=dist.ReduceOp.MIN)
            if ok.item() == 1.0:
                if self.rank == 0:
                    for bad, reason in rejected:
                        self.warn(f"checkpoint {bad} rejected: {reason}; moved to {self._set_aside(bad)}; "
                                  f"resuming from {tag}")
                dist.barrier()
                return tag
            rejected.append((tag, why or "failed the check on another rank"))
        if rejected:
            raise CheckpointError(f"no checkpoint in {self.dir} can be resumed from: "
                                  + "; ".join(f"{t}: {r}" for t, r in rejected)
                                  + ". Move them away (or choose another train.run_dir) to start anew.")
        return None

    def load(self, engine) -> dict | None:
        """Restore the newest sound checkpoint into ``engine``; return its client state (None if there is none)."""
        tag = self._choose()
        if tag is None:
            return None
        saved_world = int((self.dir / tag / COMPLETE).read_text().split()[0])
        if saved_world != dist.get_world_size():
            raise CheckpointError(f"{self.dir / tag} was written by {saved_world} ranks, this run has "
                                  f"{dist.get_world_size()}: ZeRO partitions optimizer state by rank, so resume with "
                                  f"{saved_world} (or convert it with nexa-convert zero-to-torch and start anew)")
        try:
            path, client = engine.load_checkpoint(str(self.dir), tag=tag, load_optimizer_states=True,
                                                  load_lr_scheduler_states=True)
            rng = torch.load(self.dir / tag / f"rng_rank{self.rank:05d}.pt", weights_only=True)
        except Exception as e:  # a file with the right size but bad content
            raise CheckpointError(f"{self.dir / tag} could not be loaded ({type(e).__name__}: {e}); move it away "
                                  f"to resume from the checkpoint before it") from e
        if path is None:
            raise CheckpointError(f"DeepSpeed could not load {self.dir / tag}")
        _set_rng_state(rng)
        self.loaded = tag
        return client
