"""The printed report of a ``nexa-eval`` result: the structure-disjoint tables, the structural-similarity table,
and the two test sets side by side, so a gap that appears only in a new lab is seen at once."""
from megatron_nexa.eval.compare import render_comparisons

NA = "n/a"


def render(results: dict) -> str:
    n_seeds = len(results.get("seeds", [0]))
    lines = [f"train {results['n_train']:,} spectra; test {results['n_test']:,} (structure-disjoint), "
             f"{results['n_test_fingerprint']:,} with a structure, {results['n_test_rt']:,} with RT in a known LC system; "
             f"heads fitted with {n_seeds} seed(s): mean ± SD between seeds",
             f"RT intervals: standard deviations scaled on {results.get('n_val_rt', 0):,} validation spectra "
             "(structure-disjoint); 'raw' is before, 'scale' the factor",
             f"{'features':<28}{'FP Tanimoto':>15}{'FP cosine':>11}{'RT MAE (s)':>15}{'in 68%':>8}{'in 95%':>8}"
             f"{'raw 68/95%':>12}{'scale':>7}"]
    for name, r in results["features"].items():
        raw = f"{r.get('rt_coverage_68_raw', float('nan')):.2f}/{r.get('rt_coverage_95_raw', float('nan')):.2f}"
        lines.append(f"{name:<28}{r['fingerprint_tanimoto']:>9.3f}±{r.get('fingerprint_tanimoto_sd', 0):.3f}"
                     f"{r['fingerprint_cosine']:>11.3f}{r['rt_mae']:>10.1f}±{r.get('rt_mae_sd', 0):>4.1f}"
                     f"{r['rt_coverage_68']:>8.2f}{r['rt_coverage_95']:>8.2f}{raw:>12}"
                     f"{r.get('rt_std_scale', float('nan')):>7.2f}")
    lines += _retrieval(results, "retrieval within the test split")
    ranking = results["candidate ranking"]
    first = next(iter(ranking.values()))
    lines.append(f"structure annotation: predicted fingerprint -> candidates within {results['candidate_ppm']:g} ppm "
                 f"of the structure's mass ({first['queries']:,} queries, {first['mean candidates']:.1f} candidates "
                 f"on average)")
    lines.append(f"{'fingerprint from':<40}{'hit@1':>7}{'hit@5':>7}{'hit@20':>8}")
    for name, r in ranking.items():
        lines.append(f"{name:<40}{r['hit@1']:>7.3f}{r['hit@5']:>7.3f}{r['hit@20']:>8.3f}")
    lines.append(f"{'random ranking (expected)':<40}{first['random hit@1']:>7.3f}{first['random hit@5']:>7.3f}"
                 f"{first['random hit@20']:>8.3f}")
    lines += _structural(results)
    if results.get("versus baselines"):
        lines.append(render_comparisons(results["versus baselines"]))
    lines += _labs(results)
    return "\n".join(lines)


def _retrieval(results: dict, title: str) -> list[str]:
    first = next(iter(results["retrieval"].values()))
    lines = [f"{title} ({first['queries']:,} queries with another spectrum of their structure)",
             f"{'ranking':<40}{'hit@1':>7}{'hit@5':>7}{'hit@20':>8}"]
    for name, r in results["retrieval"].items():
        lines.append(f"{name:<40}{r['hit@1']:>7.3f}{r['hit@5']:>7.3f}{r['hit@20']:>8.3f}")
    return lines


def _structural(results: dict) -> list[str]:
    scores = results.get("structural similarity") or {}
    if not scores:
        return []
    first = next(iter(scores.values()))
    lines = [f"structural similarity over the retrieval library: Spearman of the similarity with the structures' "
             f"Tanimoto ({first['pairs']:,} sampled pairs); mean Tanimoto of each query's top-5 neighbours, all and "
             f"other structures only ({first['queries']:,} queries)",
             f"{'ranking':<40}{'Spearman':>9}{'top-5 Tan.':>11}{'analogues':>10}"]
    for name, r in scores.items():
        lines.append(f"{name:<40}{r['spearman']:>9.3f}{r['top5_tanimoto']:>11.3f}{r['top5_tanimoto_analogues']:>10.3f}")
    return lines


def _labs(results: dict) -> list[str]:
    labs, lab = results.get("labs") or {}, results.get("lab-disjoint")
    if not labs.get("held_out"):
        return ["lab-disjoint test: none (no lab held out)"]
    per_lab = ", ".join(f"{name} {sum(c.values()):,}" for name, c in labs["spectra_per_held_out_lab"].items())
    lines = [f"held-out labs ({len(labs['held_out'])}; spectra in all splits): {per_lab}",
             f"training drawn from {labs['train_spectra_outside_held_out_labs']:,} of the "
             f"{labs['train_split_spectra']:,} training-split spectra; test: "
             f"{labs['test_spectra_structure_disjoint']:,} structure-disjoint, {labs['test_spectra_lab_and_structure_disjoint']:,} lab- and structure-disjoint"]
    if lab is None:
        return lines + ["lab-disjoint test: no test spectrum in the held-out labs"]
    lines.append("structure-disjoint | lab- and structure-disjoint (same heads and trained baselines; RT: no LC "
                 f"system of a held-out lab is trained on, so {lab['n_test_rt']:,} lab-disjoint rows have RT)")
    lines.append(f"{'method':<40}{'FP Tanimoto':>15}{'cand. hit@1':>15}{'retr. hit@1':>15}{'Spearman':>15}"
                 f"{'top-5 Tan.':>15}")
    for name in results["retrieval"]:
        feature = name.removesuffix(" (cosine)")
        cells = [_pair(results, lab, ("features", feature, "fingerprint_tanimoto")),
                 _pair(results, lab, ("candidate ranking", feature, "hit@1")),
                 _pair(results, lab, ("retrieval", name, "hit@1")),
                 _pair(results, lab, ("structural similarity", name, "spearman")),
                 _pair(results, lab, ("structural similarity", name, "top5_tanimoto"))]
        lines.append(f"{name:<40}" + "".join(f"{c:>15}" for c in cells))
    if lab.get("versus baselines"):
        lines.append("lab- and structure-disjoint test: " + render_comparisons(lab["versus baselines"]))
    return lines


def _pair(a: dict, b: dict, path: tuple) -> str:
    def get(d):
        for key in path:
            d = (d or {}).get(key)
        return NA if d is None else f"{d:.3f}"
    first, second = get(a), get(b)
    return NA if first == second == NA else f"{first} | {second}"
