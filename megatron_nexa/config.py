"""Typed run configuration: one object, loaded from YAML, validated, passed down.

Every section is a dataclass; unknown keys and impossible values raise ``ConfigError`` naming the
field (``model.hidden_size``) and why. ``--key=value`` overrides use the same dotted names.
"""
from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
import types
import typing
from typing import Any, Mapping, get_type_hints

import yaml


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range; ``field`` is its dotted name."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class AttentionBackend(str, enum.Enum):
    """Core attention inside the megatron-core layer spec."""

    SDPA = "sdpa"  # torch scaled_dot_product_attention with the spectral mask (default, fused kernels)
    LOCAL = "local"  # megatron-core's unfused DotProductAttention (reference, ~1.3x slower on H200)


class TransformerImpl(str, enum.Enum):
    """The layers' linears and norms: an explicit choice, never switched by what happens to be installed."""

    LOCAL = "local"  # our megatron-core spec: recomputed exact GELU, LinearKeepingWeight (the measured default)
    TE = "te"  # Transformer Engine's fused LayerNorm + Linear; megatron's stock MLP (its GELU output saved)


class Recompute(str, enum.Enum):
    """Activation recompute, passed to megatron-core's TransformerConfig."""

    NONE = "none"
    SELECTIVE = "selective"  # attention core only
    FULL = "full"  # every layer, uniform, one layer per checkpoint


class PairInput(str, enum.Enum):
    """How a retention-order pair reaches the encoder."""

    JOINED = "joined"  # card §4.2: one row [CLS] [PREC] A [SEP] [PREC] B; the pair's [CLS] is scored
    SEPARATE = "separate"  # A and B are ordinary rows; logit = r([CLS]_A) - r([CLS]_B) (RankNet)


def require(cond: bool, name: str, why: str) -> None:
    """A ``ConfigError`` naming ``name`` unless ``cond`` holds: every config's ``validate()`` speaks through it."""
    if not cond:
        raise ConfigError(f"{name}: {why}", name)


@dataclass
class ModelConfig:
    """Encoder shape and the token/head vocabulary (model card §2–4)."""

    num_layers: int = 2
    hidden_size: int = 64
    ffn_hidden_size: int = 256
    num_attention_heads: int = 4
    local_window: int = 64  # peaks; a peak sees peaks with |i - j| <= local_window // 2 (Longformer's convention)
    max_peaks: int = 256
    # m/z Fourier features: log-spaced periods from fourier_min_period to fourier_max_period (Da).
    fourier_num_frequencies: int = 128
    fourier_min_period: float = 1e-3
    fourier_max_period: float = 1e3
    intensity_hidden: int = 64
    # Masked-peak targets (the heads' vocabularies).
    mz_bins: int = 4096
    mz_min: float = 0.0
    mz_max: float = 2000.0
    intensity_bins: int = 32
    contrastive_dim: int = 128
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    layernorm_epsilon: float = 1e-5
    init_method_std: float = 0.02
    # Biases in each layer's four linears (false: Megatron-LM's --disable-bias-linear). Without them a layer has 8
    # parameter tensors, not 12, and ZeRO-3's per-parameter host work per layer falls. Kept on by
    # default: docs/decisions/0008-linear-bias-kept.md.
    linear_bias: bool = True
    attention_backend: AttentionBackend = AttentionBackend.SDPA  # docs/decisions/0001-sdpa-core-attention.md
    transformer_impl: TransformerImpl = TransformerImpl.LOCAL
    recompute: Recompute = Recompute.NONE  # docs/decisions/0005-no-activation-recompute-by-default.md
    # The MLP's GELU re-run in the backward instead of its output saved: 8·s·b·h bytes a layer less, a quarter of the
    # layer's activations, for one elementwise pass (docs/decisions/0004-recomputed-gelu.md). Local layer spec only.
    recompute_gelu: bool = True

    def validate(self, prefix: str = "model") -> None:
        for name in ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads",
                     "local_window", "max_peaks", "fourier_num_frequencies", "intensity_hidden",
                     "mz_bins", "intensity_bins", "contrastive_dim"):
            require(getattr(self, name) >= 1, f"{prefix}.{name}", f"must be >= 1, got {getattr(self, name)}")
        require(self.hidden_size % self.num_attention_heads == 0, f"{prefix}.hidden_size",
                 f"{self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}")
        require(0 < self.fourier_min_period < self.fourier_max_period, f"{prefix}.fourier_min_period",
                 f"need 0 < fourier_min_period < fourier_max_period, got {self.fourier_min_period}, "
                 f"{self.fourier_max_period}")
        require(0 <= self.mz_min < self.mz_max, f"{prefix}.mz_min",
                 f"need 0 <= mz_min < mz_max, got {self.mz_min}, {self.mz_max}")
        for name in ("hidden_dropout", "attention_dropout"):
            require(0.0 <= getattr(self, name) < 1.0, f"{prefix}.{name}", "must be in [0, 1)")
        require(self.layernorm_epsilon > 0, f"{prefix}.layernorm_epsilon", "must be > 0")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass
class MaskingConfig:
    """Masked peak modelling: a ratio drawn per spectrum from [ratio_min, ratio_max]."""

    ratio_min: float = 0.15
    ratio_max: float = 0.30
    intensity_weighted: bool = False  # DreaMS-style: more intense peaks are masked more often

    def validate(self, prefix: str = "masking") -> None:
        for name in ("ratio_min", "ratio_max"):
            v = getattr(self, name)
            require(0.0 < v < 1.0, f"{prefix}.{name}", f"mask ratio must be in (0, 1), got {v}")
        require(self.ratio_min <= self.ratio_max, f"{prefix}.ratio_min",
                 f"ratio_min={self.ratio_min} exceeds ratio_max={self.ratio_max}")


@dataclass
class DataSource:
    """One dataset version (a directory with manifest.json) and its weight in the blend."""

    path: str = ""
    weight: float = 1.0


@dataclass
class AugmentConfig:
    """Contrastive views: each view drops peaks, perturbs intensities and jitters m/z independently."""

    peak_dropout: float = 0.1
    intensity_noise: float = 0.1  # sigma of a log-normal factor per peak
    mz_jitter: float = 0.002  # Da, sigma of a Gaussian shift per peak

    def validate(self, prefix: str = "data.augment") -> None:
        require(0 <= self.peak_dropout < 1, f"{prefix}.peak_dropout", "must be in [0, 1)")
        require(self.intensity_noise >= 0 and self.mz_jitter >= 0, f"{prefix}", "noise levels must be >= 0")


@dataclass
class DataConfig:
    """Where spectra come from and how a micro-batch is composed."""

    sources: list[DataSource] = field(default_factory=list)
    train_split: str = "train"
    valid_split: str = "val"
    pair_fraction: float = 0.25  # items of a micro-batch that are retention-order pairs (see pair_input)
    view_fraction: float = 0.0  # rows given to contrastive views (each such spectrum yields two rows)
    rt_margin: float = 3.0  # seconds: pairs need |RT_A - RT_B| > rt_margin (ties never pair)
    pair_input: PairInput = PairInput.JOINED  # SEPARATE: each pair item yields two single rows
    num_workers: int = 2
    cache_dir: str | None = None  # per-split index arrays; default <version>/cache
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def validate(self, prefix: str = "data") -> None:
        for i, src in enumerate(self.sources):
            require(bool(src.path), f"{prefix}.sources[{i}].path", "is empty")
            require(src.weight > 0, f"{prefix}.sources[{i}].weight", f"must be > 0, got {src.weight}")
        require(0 <= self.pair_fraction <= 1, f"{prefix}.pair_fraction", "must be in [0, 1]")
        require(0 <= self.view_fraction <= 1, f"{prefix}.view_fraction", "must be in [0, 1]")
        require(self.pair_fraction + self.view_fraction <= 1, f"{prefix}.pair_fraction",
                 "pair_fraction + view_fraction must be <= 1")
        require(self.rt_margin >= 0, f"{prefix}.rt_margin", "must be >= 0")
        require(self.num_workers >= 0, f"{prefix}.num_workers", "must be >= 0")
        self.augment.validate(f"{prefix}.augment")


@dataclass
class LossConfig:
    """Weights of the named loss terms; a zero weight switches the objective off."""

    masked_mz: float = 1.0
    masked_intensity: float = 1.0
    retention_order: float = 1.0
    contrastive: float = 0.0
    contrastive_temperature: float = 0.1
    # not in the card: [CLS] predicts the row's whole binned spectrum through the masked-peak m/z classifier,
    # so that [CLS] must keep which peaks the spectrum has (docs/decisions/0006-cls-spectrum-term.md)
    cls_spectrum: float = 0.0

    def validate(self, prefix: str = "loss") -> None:
        for f in dataclasses.fields(self):
            require(getattr(self, f.name) >= 0, f"{prefix}.{f.name}", "must be >= 0")
        require(self.contrastive_temperature > 0, f"{prefix}.contrastive_temperature", "must be > 0")


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine decay (model card §6.4)."""

    lr: float = 1e-3
    min_lr: float = 1e-5
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    warmup_steps: int = 10
    grad_clip: float = 1.0

    def validate(self, prefix: str = "optim") -> None:
        require(self.lr > 0, f"{prefix}.lr", f"must be > 0, got {self.lr}")
        require(0 <= self.min_lr <= self.lr, f"{prefix}.min_lr", f"need 0 <= min_lr <= lr, got {self.min_lr}")
        for name in ("beta1", "beta2"):
            require(0.0 <= getattr(self, name) < 1.0, f"{prefix}.{name}", "must be in [0, 1)")
        require(self.weight_decay >= 0, f"{prefix}.weight_decay", "must be >= 0")
        require(self.warmup_steps >= 0, f"{prefix}.warmup_steps", "must be >= 0")
        require(self.grad_clip >= 0, f"{prefix}.grad_clip", "must be >= 0 (0 disables clipping)")


class WandbMode(str, enum.Enum):
    OFFLINE = "offline"  # default: files in the run directory, no network (`wandb sync` later)
    ONLINE = "online"
    DISABLED = "disabled"


@dataclass
class TrainConfig:
    """Batch shape, length, checkpoints, monitoring and failure handling of a run.

    ``global_batch_size = micro_batch_size x data-parallel size x gradient accumulation``; the DeepSpeed
    config must agree (or say "auto").
    """

    micro_batch_size: int = 8
    global_batch_size: int = 8
    train_steps: int = 100
    seed: int = 1234
    run_dir: str = "runs/default"
    log_interval: int = 10
    eval_interval: int = 100
    eval_batches: int = 10
    save_interval: int = 100
    keep_last: int = 3
    bad_step_lr_factor: float = 0.5  # non-finite loss/grads: skip the update, multiply the LR by this
    max_bad_steps: int = 5  # ... and abort after this many in a row
    spike_factor: float = 3.0  # a loss above spike_factor x its running mean is logged as a spike
    peak_tflops: float | None = None  # per device, for the MFU estimate; None: known GPUs, else no MFU
    compile: bool = False  # torch.compile each transformer layer (NexaEncoder.compile_layers)
    wandb_mode: WandbMode = WandbMode.OFFLINE
    wandb_project: str = "nexa-spec"
    # a collective that waits longer than this fails the job instead of hanging it (a rank died or wedged)
    collective_timeout_s: int = 1800

    def validate(self, prefix: str = "train") -> None:
        for name in ("micro_batch_size", "global_batch_size", "train_steps", "log_interval", "eval_interval",
                     "eval_batches", "save_interval", "keep_last", "max_bad_steps", "collective_timeout_s"):
            require(getattr(self, name) >= 1, f"{prefix}.{name}", "must be >= 1")
        require(self.global_batch_size % self.micro_batch_size == 0, f"{prefix}.global_batch_size",
                 f"{self.global_batch_size} is not a multiple of micro_batch_size={self.micro_batch_size}")
        require(0 < self.bad_step_lr_factor <= 1, f"{prefix}.bad_step_lr_factor", "must be in (0, 1]")
        require(self.spike_factor > 1, f"{prefix}.spike_factor", "must be > 1")


@dataclass
class RunConfig:
    """Everything a run needs; saved beside every checkpoint."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> "RunConfig":
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate(f.name)
        return self

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())


def to_plain(obj: Any) -> Any:
    """Dataclasses → dicts, enums → their values: what YAML and JSON can hold."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return obj.value
    return obj


def _coerce(value: Any, typ: Any, name: str) -> Any:
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):  # Optional[X]
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(typ) if a is not type(None)]
        return _coerce(value, inner, name)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{name}: expected a list, got {value!r}", name)
        (inner,) = typing.get_args(typ)
        return [_build(inner, v, f"{name}[{i}]") if dataclasses.is_dataclass(inner) else _coerce(v, inner, f"{name}[{i}]")
                for i, v in enumerate(value)]
    if isinstance(typ, type) and issubclass(typ, enum.Enum):
        try:
            return typ(value)
        except ValueError:
            raise ConfigError(f"{name}: {value!r} is not one of {[m.value for m in typ]}", name) from None
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{name}: expected true/false, got {value!r}", name)
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{name}: expected an integer, got {value!r}", name)
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {value!r}", name) from None
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected a number, got {value!r}", name)
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number, got {value!r}", name) from None
        if not math.isfinite(out):
            raise ConfigError(f"{name}: must be finite, got {value!r}", name)
        return out
    if typ is str:
        return str(value)
    raise ConfigError(f"{name}: unsupported field type {typ}", name)


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix}: expected a mapping, got {type(data).__name__}", prefix)
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(sorted(known))})"
            raise ConfigError(f"{name}: unknown key{hint}", name)
        typ = hints[key]
        if dataclasses.is_dataclass(typ):
            kwargs[key] = _build(typ, value or {}, name)
        else:
            kwargs[key] = _coerce(value, typ, name)
    return cls(**kwargs)


def _merge(base: dict, override: Mapping) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(overrides: list[str]) -> dict:
    """``["model.num_layers=4", "optim.lr=1e-4"]`` -> nested dict (values parsed as YAML scalars)."""
    out: dict = {}
    for item in overrides:
        key, sep, raw = item.removeprefix("--").partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError:  # not YAML: the text as typed (a path such as @runs/x); a wrong type is named later
            node[leaf] = raw
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML run config (missing sections take defaults), apply overrides, validate.

    A top-level ``base:`` key names another YAML (relative to this file) merged underneath.
    """
    return load_dataclass(RunConfig, path, overrides)


def load_dataclass(cls: type, path: str | Path | None = None, overrides: list[str] | None = None):
    """Any config dataclass with a ``validate()`` from YAML + ``section.key=value`` overrides.

    An error names where the bad value came from: the command-line override that set it, else the YAML."""
    overrides = list(overrides or [])
    data: dict = {}
    if path is not None:
        data = _read_yaml(Path(path))
    data = _merge(data, parse_overrides(overrides))
    try:
        return _build(cls, data, "").validate()
    except ConfigError as e:
        raise ConfigError(_locate(e, path, overrides), e.field) from None


def _locate(error: ConfigError, path: str | Path | None, overrides: list[str]) -> str:
    field = re.sub(r"\[\d+\]", "", error.field or "")
    for item in reversed(overrides):  # the last override of a key wins, so it is the one to name
        key = item.removeprefix("--").partition("=")[0]
        if field and (field == key or field.startswith(key + ".") or key.startswith(field + ".")):
            return f"command line {item!r}: {error}"
    where = str(path) if path is not None else "defaults"
    if overrides:
        where += " with command-line overrides " + " ".join(repr(o) for o in overrides)
    return f"{where}: {error}"


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    base = data.pop("base", None)
    if base is not None:
        data = _merge(_read_yaml(path.parent / base), data)
    return data


def model_config_from_dict(data: Mapping[str, Any]) -> ModelConfig:
    """For checkpoints and exports that store only the model section."""
    cfg = _build(ModelConfig, data, "model")
    cfg.validate()
    return cfg
