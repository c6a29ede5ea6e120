"""The DeepSpeed config, reconciled with the run config: one truth for batch sizes and clipping.

Batch sizes and ``gradient_clipping`` come from the YAML; in the JSON they may be "auto" (filled in)
or absent, and a different number is an error naming both values. The optimiser and LR schedule are
built from ``optim.*`` (weight-decay groups, the card's cosine), so the JSON must not define them.
An ``activation_checkpointing`` section turns megatron-core's recompute on (``model.recompute``, full by
default): megatron's own recompute is the simplest correct path under ZeRO-3 (platform notes).
ZeRO-3 leaf modules ``"auto"`` are the model's own (``with_leaf_modules``).
"""
import copy
import importlib
import json
from pathlib import Path

from megatron_nexa.config import ConfigError, Recompute, RunConfig


SHIPPED = Path(__file__).resolve().parents[2] / "ds_configs"


def find_ds_config(path: str | Path) -> Path:
    """``path`` as given, or a bare name (``zero3.json``, ``zero3``) of a shipped config in ``ds_configs/``, as the
    usual command line ``deepspeed pretrain_nexa.py --ds_config zero3.json`` names it."""
    p = Path(path)
    if p.is_file():
        return p
    if p.parent == Path("."):
        for candidate in (Path("ds_configs") / p.name, SHIPPED / p.name, SHIPPED / f"{p.name}.json"):
            if candidate.is_file():
                return candidate
    shipped = sorted(q.name for q in SHIPPED.glob("*.json"))
    raise ConfigError(f"DeepSpeed config not found: {p}" + (f" (shipped: {', '.join(shipped)})" if shipped else ""))


def load_ds_config(path: str | Path) -> dict:
    p = find_ds_config(path)
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p}: not valid JSON ({e})") from None


def reconcile(ds: dict, cfg: RunConfig, dp_size: int, source: str = "ds_config") -> tuple[dict, RunConfig]:
    """Return the DeepSpeed dict to pass to ``deepspeed.initialize`` and the (possibly updated) run config."""
    cfg = copy.deepcopy(cfg)
    t = cfg.train
    per_step = t.micro_batch_size * dp_size
    if t.global_batch_size % per_step:
        fits = [m for m in range(t.micro_batch_size, 0, -1) if t.global_batch_size % (m * dp_size) == 0]
        hint = (f"; the global batch is the recipe, so on {dp_size} ranks set --train.micro_batch_size={fits[0]}"
                if fits else "")
        raise ConfigError(f"train.global_batch_size={t.global_batch_size} is not a multiple of micro_batch_size "
                          f"({t.micro_batch_size}) x data-parallel size ({dp_size}) = {per_step}{hint}",
                          "train.global_batch_size")
    ds = fill_batch_settings(ds, {
        "train_micro_batch_size_per_gpu": (t.micro_batch_size, "train.micro_batch_size"),
        "gradient_accumulation_steps": (t.global_batch_size // per_step,
                                        "train.global_batch_size / (micro_batch_size x dp size)"),
        "train_batch_size": (t.global_batch_size, "train.global_batch_size"),
        "gradient_clipping": (cfg.optim.grad_clip, "optim.grad_clip")}, dp_size, source)
    if "activation_checkpointing" in ds:
        ds.pop("activation_checkpointing")
        if cfg.model.recompute == Recompute.NONE:
            cfg.model.recompute = Recompute.FULL
    return ds, cfg


def fill_batch_settings(ds: dict, wanted: dict[str, tuple[float, str]], dp_size: int, source: str) -> dict:
    """A copy of ``ds`` with each key of ``wanted`` (value, the run-config name it comes from) filled where it
    is "auto" or absent; a different number is an error naming both. The optimiser and LR schedule are
    built by our code, so ``optimizer``/``scheduler`` sections are refused rather than silently ignored."""
    ds = copy.deepcopy(ds)
    for key, (value, name) in wanted.items():
        given = ds.get(key, "auto")
        if given != "auto" and float(given) != float(value):
            raise ConfigError(f"{source}: {key}={given} disagrees with {name}={value} "
                              f"(dp size {dp_size}); set it to \"auto\" or make them agree")
        ds[key] = value
    for key in ("optimizer", "scheduler"):
        if key in ds:
            raise ConfigError(f"{source}: remove the {key!r} section: the optimiser and LR schedule are built "
                              f"from the run config (optim.* for pretraining, the fine-tuning config for nexa-finetune)")
    ds.setdefault("steps_per_print", 10**9)  # we log ourselves
    ds.setdefault("wall_clock_breakdown", False)
    # DeepSpeed's throughput timer is on and device-synchronising by default: a full device sync at every
    # forward start and every step end (seen in an H100 trace), which starves the GPU while the host refills
    # the queue. The trainer times steps itself.
    ds.setdefault("timers", {"throughput": {"enabled": False}})
    return ds


def zero_stage(ds: dict) -> int:
    return int(ds.get("zero_optimization", {}).get("stage", 0))


def bf16_enabled(ds: dict) -> bool:
    return bool(ds.get("bf16", {}).get("enabled", False))


def with_leaf_modules(ds: dict, model, source: str = "ds_config") -> dict:
    """``zero_optimization.leaf_module.classes`` (the modules ZeRO-3 gathers whole) named from the classes
    themselves. ``"auto"``: the class of every module of ``model`` that declares ``gathered_whole`` (each
    transformer layer, each head). A list is kept, each name checked: DeepSpeed matches a name against each
    module's class, by defining module and qualified name or by bare name, and after a rename silently matches
    nothing. Without the key, DeepSpeed's defaults stand."""
    leaf = ds.get("zero_optimization", {}).get("leaf_module") or {}
    if "classes" not in leaf:
        return ds
    ds = copy.deepcopy(ds)
    leaf = ds["zero_optimization"]["leaf_module"]
    if leaf["classes"] in ("auto", ["auto"]):
        declared = {type(m): None for m in model.modules() if getattr(type(m), "gathered_whole", False)}
        leaf["classes"] = [f"{c.__module__}.{c.__qualname__}" for c in declared]
        return ds
    present = {type(m).__name__ for m in model.modules()}
    for name in [leaf["classes"]] if isinstance(leaf["classes"], str) else leaf["classes"]:
        problem = _not_a_class(name) if "." in name else (None if name in present else "no module of the model")
        if problem:
            raise ConfigError(f"{source}: zero_optimization.leaf_module.classes names {name!r}, which is {problem}; "
                              "DeepSpeed would match nothing. Name the class by its full path, or use \"auto\"")
    return ds


def _not_a_class(path: str) -> str | None:
    """Why ``path`` (``package.module.Class``) does not name a class where it is defined, or None if it does."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return f"not found in {'.'.join(parts[:cut])}"
        if not isinstance(obj, type):
            return "not a class"
        defined = f"{obj.__module__}.{obj.__qualname__}"
        return None if defined == path else f"defined as {defined}"
    return f"not importable (no module {parts[0]!r})"
