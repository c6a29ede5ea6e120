"""Host (Python) time of the encoder's forward + backward: our layer spec against megatron-core's own linears.

    python benchmarks/host_time.py [--layers 4] [--repeats 5] [--calls 40]

At the pilot's micro-batch the GPU step's forward is bound by the host (docs/performance.md), so what a layer
costs in Python matters. This measures it where nothing else does: on the CPU, at the tiny config's width
and two spectra per batch, where the arithmetic is negligible and the time is the host's. The baseline,
built in the same run, is the same encoder with megatron-core's ``ColumnParallelLinear`` /
``RowParallelLinear`` in place of ours (``layer_specs.NexaColumnParallelLinear`` / ``NexaRowParallelLinear``:
``layer_specs.LinearKeepingWeight`` at tensor-parallel size 1, and the row linear's process group handed on).
A third row swaps that Function for torch's linear with its own backward: the floor for host time, not
shipped, because its backward keeps a view of every gathered ZeRO-3 weight alive (``LinearKeepingWeight``).
Best of ``--repeats`` runs of ``--calls`` forward + backward passes each, one thread.
"""
import argparse
import contextlib
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DS_ACCELERATOR", "cpu")

from benchmarks._util import best_of  # noqa: E402
from megatron_nexa.config import load_config  # noqa: E402
from megatron_nexa.testing import synthetic_batch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def encoder(cfg, stock_linears: bool):
    """The megatron-core encoder; ``stock_linears``: with megatron-core's linears in place of our subclasses."""
    from megatron.core.tensor_parallel.layers import ColumnParallelLinear, RowParallelLinear

    from megatron_nexa.model import layer_specs
    from megatron_nexa.model.encoder import NexaEncoder

    ours = layer_specs.NexaColumnParallelLinear, layer_specs.NexaRowParallelLinear
    if stock_linears:  # layer_spec() reads these names when it builds the spec
        layer_specs.NexaColumnParallelLinear, layer_specs.NexaRowParallelLinear = ColumnParallelLinear, RowParallelLinear
    try:
        torch.manual_seed(0)
        return NexaEncoder(cfg.model).train()  # model.transformer_impl: local by default
    finally:
        layer_specs.NexaColumnParallelLinear, layer_specs.NexaRowParallelLinear = ours


@contextlib.contextmanager
def torch_linear():
    """Our linears with torch's own linear and backward in place of ``LinearKeepingWeight``."""
    from megatron_nexa.model import layer_specs

    shipped = layer_specs.linear
    layer_specs.linear = torch._C._nn.linear
    try:
        yield
    finally:
        layer_specs.linear = shipped


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--calls", type=int, default=40)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from megatron_nexa.engine.distributed import init_parallel

    init_parallel(seed=0)
    cfg = load_config(REPO / "configs/model/tiny.yaml", [f"model.num_layers={args.layers}"])
    inputs = synthetic_batch(cfg, 2).encoder_inputs()
    times = {}
    for name, stock, context in (("megatron-core linears (baseline)", True, contextlib.nullcontext),
                                 ("our layer spec", False, contextlib.nullcontext),
                                 ("  with torch's linear (not shipped)", False, torch_linear)):
        model = encoder(cfg, stock)

        def passes():
            for _ in range(args.calls):
                model(*inputs).square().mean().backward()

        with context():
            passes()  # warm-up
            times[name] = best_of(passes, args.repeats) / args.calls
    base = times["megatron-core linears (baseline)"]
    print(f"encoder forward + backward, host time per call ({args.layers} layers, tiny width, 2 spectra, CPU, "
          f"1 thread, best of {args.repeats} x {args.calls}):")
    for name, t in times.items():
        print(f"  {name:<36} {t * 1e3:7.3f} ms   {t / base:5.2f} x baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
