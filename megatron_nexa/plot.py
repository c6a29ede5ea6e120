"""Render a run's metrics.jsonl as a PNG of the loss curves (train terms, validation vs frequency prior)."""
import json
from pathlib import Path


def plot_metrics(metrics_path: str | Path, out_path: str | Path | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics_path = Path(metrics_path)
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    train = {}
    for r in rows:  # a resumed run logs some steps twice: keep the last
        if "loss" in r:
            train[r["step"]] = r
    val = {r["step"]: r for r in rows if "val_masked_mz" in r}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    steps = sorted(train)
    for key in ("loss", "masked_mz", "masked_intensity", "retention_order", "contrastive", "cls_spectrum"):
        ys = [train[s].get(key) for s in steps]
        if any(y is not None for y in ys):
            axes[0].plot(steps, ys, label=key)
    axes[0].set(title="training loss terms", xlabel="step", yscale="log")
    axes[0].legend()
    vs = sorted(val)
    axes[1].plot(vs, [val[s]["val_masked_mz"] for s in vs], "o-", label="model")
    axes[1].plot(vs, [val[s]["val_prior_masked_mz"] for s in vs], "s--", label="frequency prior")
    axes[1].set(title="validation masked m/z cross-entropy", xlabel="step")
    axes[1].legend()
    axes[2].plot(vs, [val[s]["val_masked_mz_acc"] for s in vs], "o-", label="model")
    axes[2].plot(vs, [val[s]["val_prior_masked_mz_acc"] for s in vs], "s--", label="frequency prior")
    for key in ("masked_mz_acc", "retention_order_acc"):
        ys = [train[s].get(key) for s in steps]
        if any(y is not None for y in ys):
            axes[2].plot(steps, ys, alpha=0.5, label=f"train {key}")
    axes[2].set(title="accuracy", xlabel="step")
    axes[2].legend()
    fig.tight_layout()
    out = Path(out_path) if out_path else metrics_path.with_name("loss_curves.png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
