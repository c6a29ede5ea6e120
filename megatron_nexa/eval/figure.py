"""One PNG of a ``nexa-eval`` result: every metric beside its baselines, as in the printed table; retrieval and the
structural similarity of every ranking, structure-disjoint beside lab- and structure-disjoint."""
from pathlib import Path


def plot_evaluation(results: dict, out_path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    features = results["features"]
    names = list(features)
    fig, grid = plt.subplots(2, 3, figsize=(22, 10))
    axes = grid.ravel()

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

    lab = results.get("lab-disjoint") or {}
    _side_by_side(axes[2], results["retrieval"], lab.get("retrieval") or {}, "hit@1",
                  "retrieval hit@1 by structure within each test library")
    ranking = dict(results["candidate ranking"])
    first = next(iter(ranking.values()))
    ranking["random ranking (expected)"] = {k: first[f"random {k}"] for k in ("hit@1", "hit@5", "hit@20")}
    grouped(axes[3], ranking, f"fingerprint → candidates within {results['candidate_ppm']:g} ppm")
    for ax, key, title in ((axes[4], "spearman", "Spearman(similarity, structures' Tanimoto)"),
                           (axes[5], "top5_tanimoto", "mean Tanimoto of the top-5 neighbours")):
        _side_by_side(ax, results.get("structural similarity") or {}, lab.get("structural similarity") or {}, key,
                      title)
    for ax in axes[:2]:
        ax.tick_params(axis="x", labelsize=8, rotation=15)
    seeds = len(results.get("seeds", [0]))
    lab_n = f", {lab['n_test']:,} more lab- and structure-disjoint" if lab else ""
    fig.suptitle(f"nexa-eval: train {results['n_train']:,} spectra, test {results['n_test']:,} (structure-disjoint)"
                 f"{lab_n}; heads: mean ± SD over {seeds} seed(s)")
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


def _side_by_side(ax, structure: dict, lab: dict, key: str, title: str) -> None:
    """One bar pair per ranking: the structure-disjoint library and the held-out labs' one."""
    names = list(structure)
    for j, (label, scores) in enumerate((("structure-disjoint", structure), ("lab- and structure-disjoint", lab))):
        if scores:
            ax.barh([i + 0.4 * j for i in range(len(names))], [scores.get(n, {}).get(key, 0) for n in names], 0.4,
                    label=label)
    ax.set_yticks([i + 0.2 for i in range(len(names))], [n.removesuffix(" (cosine)") for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set(title=title)
    ax.legend(fontsize=7, loc="best")
