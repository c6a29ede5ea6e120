"""``nexa-plan --model CONFIG``: exact parameter counts of a model config."""
import argparse

from megatron_nexa.config import load_config
from megatron_nexa.plan import count_parameters


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nexa-plan", description=__doc__)
    parser.add_argument("--model", required=True, help="YAML run/model config, e.g. configs/model/nexa_3b.yaml")
    args = parser.parse_args(argv)
    cfg = load_config(args.model).model
    count = count_parameters(cfg)
    print(f"model: {args.model}  ({cfg.num_layers} layers, hidden {cfg.hidden_size}, "
          f"FFN {cfg.ffn_hidden_size}, {cfg.num_attention_heads} heads)")
    for name in ("embedding", "transformer", "encoder", "heads", "total"):
        value = getattr(count, name)
        print(f"  {name:<12} {value:>15,d}  ({value / 1e9:.3f} B)")


if __name__ == "__main__":
    main()
