"""The ``nexa-finetune`` run config: a pretrained encoder, a task head and a dataset version.

Loaded like the pretraining config (``config.load_dataclass``: YAML, ``--key=value`` overrides, validation)."""
import enum
from dataclasses import dataclass

from megatron_nexa.config import require


class Task(str, enum.Enum):
    """What ``nexa-finetune`` trains on top of the encoder."""

    FINGERPRINT = "fingerprint"  # Morgan bits from SMILES, multi-label BCE
    RT = "rt"  # retention time per LC system, Gaussian NLL
    CCS = "ccs"  # collision cross section, Gaussian NLL (synthetic unless the data has a ccs column)
    CONTRASTIVE = "contrastive"  # InfoNCE, spectra of one structure (InChIKey first block) are positives


@dataclass
class FinetuneConfig:
    """A ``nexa-finetune`` run: pretrained encoder (Hugging Face folder) + a task head on a dataset version."""

    task: Task = Task.FINGERPRINT
    init: str = ""  # the pretrained model: a folder written by nexa-convert to-hf
    random_init: bool = False  # keep init's architecture, draw fresh weights (the random-init baseline)
    data: str = ""  # a dataset version (nexa-preprocess output), split by structure
    out_dir: str = "runs/finetune"
    steps: int = 300
    micro_batch_size: int = 32
    lr: float = 1e-3  # the head
    encoder_lr: float = 5e-5  # the encoder, once unfrozen
    unfreeze_after: int | None = 0  # encoder frozen for this many steps; None: frozen throughout
    warmup_steps: int = 0  # linear warm-up of each learning rate (the encoder's from when it unfreezes)
    final_lr_fraction: float = 1.0  # cosine decay of both learning rates to this fraction at the last step
    weight_decay: float = 0.01
    n_bits: int = 2048  # fingerprint length (2048 or 4096 in the card)
    temperature: float = 0.1  # InfoNCE
    max_train: int | None = None  # at most this many training spectra (a quick run)
    log_interval: int = 25
    seed: int = 0

    def validate(self) -> "FinetuneConfig":
        require(bool(self.init), "init", "name the pretrained model (a nexa-convert to-hf folder)")
        require(bool(self.data), "data", "name a dataset version folder")
        for name in ("steps", "micro_batch_size", "log_interval"):
            require(getattr(self, name) >= 1, name, "must be >= 1")
        require(self.lr > 0 and self.encoder_lr >= 0, "lr", "lr must be > 0 and encoder_lr >= 0")
        require(self.unfreeze_after is None or self.unfreeze_after >= 0, "unfreeze_after", "must be >= 0 or null")
        require(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        require(0 <= self.final_lr_fraction <= 1, "final_lr_fraction", "must be in [0, 1] (1: constant)")
        require(self.n_bits in (1024, 2048, 4096) or self.n_bits >= 64, "n_bits", "must be >= 64")
        require(self.task != Task.CONTRASTIVE or self.micro_batch_size % 2 == 0, "micro_batch_size",
                 "must be even for contrastive pairs")
        require(self.temperature > 0, "temperature", "must be > 0")
        return self
