import os
import warnings
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests/fixtures"  # small files the tests read (JSON copied from benchmark results)
SHARED = REPO.parent / "shared"
warnings.filterwarnings("ignore", message=".*(Transformer Engine|Apex).*")
if not torch.cuda.is_available():
    os.environ.setdefault("DS_ACCELERATOR", "cpu")  # on a GPU machine DeepSpeed detects CUDA itself


LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
CHILD_DROPPED = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")  # a launcher's rank and port, not its address


def child_env(**extra: str) -> dict:
    """This environment for a child process that starts its own one-process group: without a launcher's rank
    variables or port (a ``parallel`` group's or an outer launcher's), with ``extra`` set."""
    return {**{k: v for k, v in os.environ.items() if k not in CHILD_DROPPED}, **extra}


def zero3_every_parameter_partitioned() -> dict:
    """ds_configs/zero3.json with no persistence threshold: ZeRO-3 partitions (and fetches) even a tiny model's
    parameters, which the shipped threshold (10^6 elements) would keep whole on every rank."""
    import json

    ds = json.loads((REPO / "ds_configs/zero3.json").read_text())
    ds["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    return ds


@pytest.fixture(scope="session")
def parallel():
    """A one-process gloo group with megatron parallel_state and the CPU shims. The launcher variables
    it sets are removed again, so subprocesses started by later tests do not inherit this group's port."""
    from megatron_nexa.engine.distributed import init_parallel

    before = {k: os.environ.get(k) for k in LAUNCH_VARS}
    init_parallel(seed=1234)
    for k, v in before.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def tiny_cfg():
    from megatron_nexa.config import load_config

    return load_config(REPO / "configs/model/tiny.yaml")


MASSBANK_FILES = sorted(str(p) for p in (SHARED / "data/massbank").glob("*.mgf.gz"))


@pytest.fixture(scope="session")
def massbank(tmp_path_factory):
    """The shipped MassBank spectra preprocessed once per session (1 MB shards, so several per split)."""
    if len(MASSBANK_FILES) != 4:
        pytest.skip("../shared/data/massbank is missing")
    from megatron_nexa.data.filters import PreprocessSettings
    from megatron_nexa.data.preprocess import JobOptions, preprocess

    out = tmp_path_factory.mktemp("massbank")
    preprocess(MASSBANK_FILES, str(out), "massbank", 1, PreprocessSettings(),
               JobOptions(workers=2, shard_bytes=10**6, progress=False), log=lambda *_: None)
    return out / "massbank_v1"
