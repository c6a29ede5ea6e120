import os
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
warnings.filterwarnings("ignore", message=".*(Transformer Engine|Apex).*")
os.environ.setdefault("DS_ACCELERATOR", "cpu")


@pytest.fixture(scope="session")
def parallel():
    """A one-process gloo group with megatron parallel_state and the CPU shims."""
    from megatron_nexa.engine.distributed import init_parallel

    init_parallel(seed=1234)


@pytest.fixture
def tiny_cfg():
    from megatron_nexa.config import load_config

    return load_config(REPO / "configs/model/tiny.yaml")
