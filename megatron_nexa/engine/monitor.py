"""Metric sinks: console, a JSONL file in the run directory, and wandb (offline unless set online)."""
import json
import math
import time
from pathlib import Path

from megatron_nexa.config import RunConfig, WandbMode
from megatron_nexa.model.flops import forward_flops

# Dense bf16 peak per device (TFLOP/s), for the MFU estimate when train.peak_tflops is not given.
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0, "L40S": 362.0, "B200": 2250.0}


def device_peak_tflops(cfg: RunConfig) -> float | None:
    if cfg.train.peak_tflops:
        return cfg.train.peak_tflops
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for key, value in PEAK_TFLOPS.items():
            if key in name:
                return value
    return None


def model_flops_per_step(cfg: RunConfig, rows: int, seq_len: int) -> float:
    """3 x forward; forward = 2·b·s·(4h² + 2h·ffn) + 4·b·s²·h per layer (the GPU issue's count)."""
    return 3.0 * forward_flops(cfg.model, rows, seq_len)


class Monitor:
    def __init__(self, cfg: RunConfig, run_dir: Path, enabled: bool):
        self.enabled, self.run_dir = enabled, run_dir
        self.jsonl = None
        self.wandb = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(run_dir / "metrics.jsonl", "a")
        if cfg.train.wandb_mode != WandbMode.DISABLED:
            import wandb

            self.wandb = wandb.init(project=cfg.train.wandb_project, dir=str(run_dir), mode=cfg.train.wandb_mode.value,
                                    config=cfg.to_dict(), resume="allow", id=_wandb_id(run_dir))

    def log(self, step: int, metrics: dict, console: str | None = None):
        if not self.enabled:
            return
        clean = {k: _json_value(v) for k, v in metrics.items()}
        self.jsonl.write(json.dumps({"step": step, "time": round(time.time(), 3), **clean}) + "\n")
        self.jsonl.flush()
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in clean.items() if isinstance(v, float)}, step=step)
        if console:
            print(console, flush=True)

    def event(self, step: int, kind: str, message: str):
        """Rare things worth finding later (skipped steps, spikes, saves): console + JSONL."""
        if self.enabled:
            self.jsonl.write(json.dumps({"step": step, "time": round(time.time(), 3), "event": kind,
                                         "message": message}) + "\n")
            self.jsonl.flush()
            print(f"[step {step}] {kind}: {message}", flush=True)

    def close(self, exit_code: int = 0):
        if self.jsonl:
            self.jsonl.close()
            self.jsonl = None
        if self.wandb is not None:
            self.wandb.finish(exit_code=exit_code)
            self.wandb = None


def _json_value(v):
    """Numbers as floats (NaN/inf as null, which JSON lacks; 0-d tensors and numpy scalars too), anything
    else as text."""
    if getattr(v, "ndim", None) == 0 and hasattr(v, "item"):
        v = v.item()
    if isinstance(v, (int, float)):
        return float(v) if math.isfinite(float(v)) else None
    return str(v)


def _wandb_id(run_dir: Path) -> str:
    path = run_dir / "wandb_id"
    if not path.exists():
        import uuid

        path.write_text(uuid.uuid4().hex[:12])
    return path.read_text().strip()
