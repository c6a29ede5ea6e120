"""``nexa-plan --model CONFIG [cluster options]``: exact parameter counts, and the training plan on a
cluster (tokens, steps, FLOPs, per-GPU memory under ZeRO-1/2/3, days). Defaults are the card's: 16 H100s
on one VM, 32 spectra per GPU, 539 M training spectra x 256 tokens, 3 epochs; memory is sized by
ds_configs/zero{1,2,3}.json unless ``--ds-config`` gives another for its stage."""
import argparse

from megatron_nexa.cluster_plan import Cluster, ZeroSettings, plan, render
from megatron_nexa.config import Recompute, load_config
from megatron_nexa.plan import count_parameters


def main(argv: list[str] | None = None) -> None:
    d = Cluster()
    p = argparse.ArgumentParser(prog="nexa-plan", description=__doc__)
    p.add_argument("--model", required=True, help="YAML run/model config, e.g. configs/model/nexa_3b.yaml")
    p.add_argument("--gpus-per-node", type=int, default=d.gpus_per_node)
    p.add_argument("--nodes", type=int, default=d.nodes)
    p.add_argument("--micro-batch", type=int, default=d.micro_batch)
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
    args = p.parse_args(argv)
    run = load_config(args.model)
    cfg = run.model
    zero = dict(d.zero)
    for path in args.ds_config:
        try:
            z = ZeroSettings.from_ds_config(path)
        except ValueError as e:
            p.error(str(e))
        zero[z.stage] = z
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
    print(render(args.model, cfg, cluster, plan(cfg, cluster)))


if __name__ == "__main__":
    main()
