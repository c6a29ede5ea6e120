"""Run under torchrun: for each case (a DeepSpeed config and an accumulation), build the engine with DeepSpeed's comms
logger on, take optimizer steps on synthetic batches, and write what the logger recorded in the last one.

    torchrun --nproc_per_node N tests/comm_probe.py CASES_JSON OUT_JSON   (a case: config, ds, accum)

The first two steps record ZeRO-3's module trace (and check it across ranks); the third is the steady state."""
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import deepspeed.comm as ds_comm  # noqa: E402

from megatron_nexa.config import load_config  # noqa: E402
from megatron_nexa.engine.setup import build  # noqa: E402
from megatron_nexa.testing import engine_step, synthetic_batch  # noqa: E402

STEPS = 3


def logged_step(cfg_path: str, ds: dict, accum: int, work: Path) -> dict[str, int]:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    cfg = load_config(cfg_path, ["--train.micro_batch_size=1", f"--train.global_batch_size={world * accum}",
                                 "--data.sources=[{path: unused}]"])
    ds = {**ds, "comms_logger": {"enabled": True, "verbose": False, "prof_all": True, "debug": False}}
    path = work / f"ds_rank{rank}.json"
    path.write_text(json.dumps(ds))
    built = build(cfg, str(path))
    for step in range(STEPS):
        ds_comm.reset_log()
        for micro in range(accum):
            engine_step(built, synthetic_batch(cfg, 1, seed=1000 * rank + 10 * step + micro))
    logged: dict[str, int] = {}
    for name, by_size in ds_comm.comms_logger.get_raw_data().items():
        op = name.split(" |")[0]
        logged[op] = logged.get(op, 0) + sum(size * calls[0] for size, calls in by_size.items())
    built.engine.destroy()
    return logged


def main() -> None:
    cases_path, out = sys.argv[1:3]
    work = Path(out).parent
    results = [logged_step(case["config"], case["ds"], case["accum"], work)
               for case in json.loads(Path(cases_path).read_text())]
    if int(os.environ["RANK"]) == 0:
        Path(out).write_text(json.dumps(results))


if __name__ == "__main__":
    main()
