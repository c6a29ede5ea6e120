"""``nexa-plan --model CONFIG [cluster options]``: exact parameter counts, and the training plan on a
cluster (tokens, steps, FLOPs, per-GPU memory under ZeRO-1/2/3, days). Defaults are the card's: 16 H100s
on one VM, 32 spectra per GPU, 539 M training spectra x 256 tokens, 3 epochs; memory is sized by
ds_configs/zero{1,2,3}.json unless ``--ds-config`` gives another for its stage. With the model measured on a GPU
(benchmarks/results), it also predicts each stage's step time from the bytes ZeRO moves over the fabric, recommends
the fastest stage that fits, and ``--write-config DIR`` writes its DeepSpeed JSON and a Slurm preset."""
import argparse
import json
import math
from pathlib import Path

from megatron_nexa.cluster_plan import Cluster, ZeroSettings, plan, render, shipped_ds_configs
from megatron_nexa.comm_plan import CommSettings
from megatron_nexa.config import ConfigError, Recompute, load_config
from megatron_nexa.model.flops import forward_flops
from megatron_nexa.plan import count_parameters
from megatron_nexa.step_time import (LINKS, Compute, across_nodes_gbs, measured_compute, model_name, predict, recommend,
                                     render_prediction, with_hpz)


def main(argv: list[str] | None = None) -> None:
    d = Cluster()
    p = argparse.ArgumentParser(prog="nexa-plan", description=__doc__)
    p.add_argument("--model", required=True, help="YAML run/model config, e.g. configs/model/nexa_3b.yaml")
    p.add_argument("--gpus-per-node", type=int, default=d.gpus_per_node)
    p.add_argument("--nodes", type=int, default=d.nodes)
    p.add_argument("--micro-batch", type=int,
                   help="spectra per GPU; default: the run config's global batch over the GPUs and accumulation")
    p.add_argument("--grad-accum", type=int, default=d.grad_accum)
    p.add_argument("--gpu-memory-gib", type=float, default=d.gpu_memory_gib)
    p.add_argument("--peak-tflops", type=float, default=d.peak_tflops, help="dense bf16 per GPU")
    p.add_argument("--mfu", type=float, default=d.mfu, help="model FLOPs utilisation to assume")
    p.add_argument("--recompute", choices=[r.value for r in Recompute], help="default: the model config's")
    p.add_argument("--spectra", type=float, default=d.train_spectra)
    p.add_argument("--tokens-per-spectrum", type=int, default=d.tokens_per_spectrum)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--ds-config", action="append", default=[], metavar="JSON",
                   help="DeepSpeed config whose buffers size its ZeRO stage's memory (repeatable)")
    p.add_argument("--intra", choices=sorted(LINKS), default="nvlink4", help="the link between GPUs of a node")
    p.add_argument("--fabric", choices=sorted(LINKS), default="ndr400", help="the network between nodes, per GPU")
    p.add_argument("--intra-gbps", type=float, help="bus bandwidth within a node, GB/s (e.g. nexa-preflight's)")
    p.add_argument("--inter-gbps", type=float,
                   help="bus bandwidth of a ring across nodes, GB/s (nexa-preflight's inter-node line)")
    p.add_argument("--write-config", metavar="DIR", help="write the recommended DeepSpeed JSON and a Slurm preset")
    args = p.parse_args(argv)
    for name in ("gpus_per_node", "nodes", "micro_batch", "grad_accum", "gpu_memory_gib", "peak_tflops", "mfu",
                 "spectra", "tokens_per_spectrum", "epochs", "intra_gbps", "inter_gbps"):
        value = getattr(args, name)
        if value is not None and not 0 < value < math.inf:
            p.error(f"--{name.replace('_', '-')} must be a positive number, not {value}")
    if args.mfu > 1:
        p.error(f"--mfu is a fraction of the peak, at most 1, not {args.mfu}")
    if args.write_config and Path(args.write_config).exists() and not Path(args.write_config).is_dir():
        p.error(f"--write-config {args.write_config}: is a file (expected a folder to write into)")
    try:
        run = load_config(args.model)
    except (OSError, ConfigError) as e:
        p.error(f"--model {args.model}: {e}")
    cfg = run.model
    gpus, global_batch = args.nodes * args.gpus_per_node, run.train.global_batch_size
    if args.micro_batch is None:  # the global batch is the recipe (docs/decisions/0014)
        if global_batch % (gpus * args.grad_accum):
            p.error(f"the global batch of {global_batch} ({args.model}) does not split over {gpus} GPUs x "
                    f"accumulation {args.grad_accum}: choose --gpus-per-node/--nodes/--grad-accum that divide it, or "
                    "set --micro-batch (a different global batch)")
        args.micro_batch = global_batch // (gpus * args.grad_accum)
    if args.write_config and args.micro_batch * gpus * args.grad_accum != global_batch:
        p.error(f"--write-config: micro-batch {args.micro_batch} x {gpus} GPUs x accumulation {args.grad_accum} is not "
                f"the run's global batch of {global_batch}, so the preset would not start")
    ds_by_stage = shipped_ds_configs()
    for path in args.ds_config:
        try:
            stage = ZeroSettings.from_ds_config(path).stage  # the file read and its stage checked, or a clear error
            ds_by_stage[stage] = json.loads(Path(path).read_text())
        except ValueError as e:
            p.error(str(e))
        try:
            CommSettings.from_ds_config(ds_by_stage[stage])
        except ValueError as e:
            p.error(f"--ds-config {path}: {e}")
    zero = {s: ZeroSettings.from_section(ds["zero_optimization"]) for s, ds in ds_by_stage.items()}
    count = count_parameters(cfg)
    print(f"model: {args.model}  ({cfg.num_layers} layers, hidden {cfg.hidden_size}, "
          f"FFN {cfg.ffn_hidden_size}, {cfg.num_attention_heads} heads)")
    for name in ("embedding", "transformer", "encoder", "heads", "total"):
        value = getattr(count, name)
        print(f"  {name:<12} {value:>15,d}  ({value / 1e9:.3f} B)")
    cluster = Cluster(gpus_per_node=args.gpus_per_node, nodes=args.nodes, micro_batch=args.micro_batch,
                      grad_accum=args.grad_accum, gpu_memory_gib=args.gpu_memory_gib, peak_tflops=args.peak_tflops,
                      mfu=args.mfu, recompute=Recompute(args.recompute) if args.recompute else cfg.recompute,
                      masked_fraction=run.masking.ratio_max, zero=zero,
                      train_spectra=args.spectra, tokens_per_spectrum=args.tokens_per_spectrum, epochs=args.epochs)
    result = plan(cfg, cluster)
    print(render(args.model, cfg, cluster, result))
    if args.nodes > 1:
        link, bus = LINKS[args.fabric], args.inter_gbps
        tabled = across_nodes_gbs(link, LINKS[args.intra], args.gpus_per_node)
    else:
        link, bus = LINKS[args.intra], args.intra_gbps
        tabled = link.bus_gbs
    bus = bus or tabled
    seq = cfg.max_peaks + 2
    if args.nodes == 1 and (args.inter_gbps or args.fabric != p.get_default("fabric")):
        print("  note: --fabric and --inter-gbps are for several nodes; on one node --intra / --intra-gbps set it")
    compute = measured_compute(model_name(cfg) or "", cfg, cluster.micro_batch, run.train.compile)
    if compute is None:  # never measured: the assumed MFU, no host work, no update
        micro_ms = 3 * forward_flops(cfg, cluster.micro_batch, seq) / (cluster.peak_tflops * 1e12 * cluster.mfu) * 1e3
        compute = Compute(cluster.micro_batch, micro_ms, 0.0, 0.0, f"not measured: {cluster.mfu:.0%} MFU assumed")
    labelled = {f"ZeRO-{stage}": ds for stage, ds in ds_by_stage.items()}
    if args.nodes > 1:  # ZeRO++ hpZ: the backward's gathers within a node
        labelled[f"ZeRO-3 hpZ {args.gpus_per_node}"] = with_hpz(ds_by_stage[3], args.gpus_per_node)
    group_gbs = args.intra_gbps or LINKS[args.intra].bus_gbs
    try:
        predicted = predict(cfg, compute, labelled, cluster.gpus, cluster.micro_batch, cluster.grad_accum, bus,
                            3 * forward_flops(cfg, cluster.global_batch, seq), cluster.peak_tflops,
                            result["total_steps"], run.optim.weight_decay, group_gbs)
    except ValueError as e:  # a --ds-config that does not fit the cluster (an hpZ group that does not divide it)
        p.error(str(e))
    fits = {label: result["memory_gib"][pr.stage]["total"] + pr.extra_gib <= 0.9 * cluster.gpu_memory_gib
            for label, pr in predicted.items()}
    print(render_prediction(predicted, fits, link, bus, tabled, compute, cluster.micro_batch))
    best = recommend(predicted, fits)
    if best and args.write_config:
        extra = (f"--train.micro_batch_size={args.micro_batch}" if args.micro_batch != run.train.micro_batch_size
                 else "")
        write_config(Path(args.write_config), args.model, labelled[best], best, args.nodes, args.gpus_per_node, extra)


def write_config(out: Path, config: str, ds: dict, label: str, nodes: int, gpus_per_node: int, extra: str) -> None:
    """The recommended DeepSpeed JSON and a Slurm preset that runs ``config`` with it (slurm/submit.sh takes it)."""
    out.mkdir(parents=True, exist_ok=True)
    ds_path = (out / f"{label.lower().replace('-', '').replace(' ', '_')}.json").resolve()
    ds_path.write_text(json.dumps(ds, indent=2) + "\n")
    name = f"{Path(config).stem}_{nodes}x{gpus_per_node}"
    preset = out / f"{name}.env"
    preset.write_text(f"# Written by nexa-plan: {label}, the fastest setup that fits.\nNODES={nodes}\n"
                      f"GPUS_PER_NODE={gpus_per_node}\nTIME=7-00:00:00\nCONFIG={config}\nDS_CONFIG={ds_path}\n"
                      f"RUN_DIR=runs/{name}\n" + (f"EXTRA_ARGS={extra}\n" if extra else ""))
    print(f"  wrote {ds_path} and {preset.resolve()}")


if __name__ == "__main__":
    main()
