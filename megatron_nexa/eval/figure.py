"""One PNG of a ``nexa-eval`` result: every metric beside its baselines, as in the printed table."""
from pathlib import Path


def plot_evaluation(results: dict, out_path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    features = results["features"]
    names = list(features)
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))

    axes[0].bar(names, [features[n]["fingerprint_tanimoto"] for n in names], color="C0", capsize=4,
                yerr=[features[n].get("fingerprint_tanimoto_sd", 0) for n in names])
    axes[0].set(title="fingerprint Tanimoto (test, higher is better)")

    axes[1].bar(names, [features[n]["rt_mae"] for n in names], color="C1", capsize=4,
                yerr=[features[n].get("rt_mae_sd", 0) for n in names])
    for i, n in enumerate(names):
        r = features[n]
        axes[1].annotate(f"in 68%: {r['rt_coverage_68']:.2f}\nin 95%: {r['rt_coverage_95']:.2f}", (i, r["rt_mae"]),
                         ha="center", va="bottom", fontsize=8)
    axes[1].set(title="RT MAE, s (lower is better); coverage after val. scaling",
                ylim=(0, 1.25 * max(features[n]["rt_mae"] for n in names)))

    def grouped(ax, rows: dict, title: str):
        ks = ("hit@1", "hit@5", "hit@20")
        width = 0.8 / len(rows)
        for j, (name, r) in enumerate(rows.items()):
            ax.bar([i + j * width for i in range(len(ks))], [r[k] for k in ks], width, label=name)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(ks))], ks)
        ax.set(title=title, ylim=(0, 1))
        ax.legend(fontsize=7, loc="lower right")

    grouped(axes[2], results["retrieval"], "retrieval by structure within the test split")
    ranking = dict(results["candidate ranking"])
    first = next(iter(ranking.values()))
    ranking["random ranking (expected)"] = {k: first[f"random {k}"] for k in ("hit@1", "hit@5", "hit@20")}
    grouped(axes[3], ranking, f"fingerprint → candidates within {results['candidate_ppm']:g} ppm")
    for ax in axes[:2]:
        ax.tick_params(axis="x", labelsize=8, rotation=15)
    seeds = len(results.get("seeds", [0]))
    fig.suptitle(f"nexa-eval: train {results['n_train']:,} spectra, test {results['n_test']:,} (structure-disjoint); "
                 f"heads: mean ± SD over {seeds} seed(s)")
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path
