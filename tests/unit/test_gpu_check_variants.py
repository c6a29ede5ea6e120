"""Every variant gpu_check.sh asks gpu_step for exists: a misspelt name would cost a stage of a lent GPU's
few minutes (the script itself only runs there)."""
import re

from benchmarks.gpu_variants import VARIANTS
from tests.conftest import REPO


def test_every_default_variant_of_gpu_check_exists():
    script = (REPO / "benchmarks/gpu_check.sh").read_text()
    lists = re.findall(r"\$\{(?:VARIANTS_\w+|PROFILE_3B):-([^}]*)\}", script)
    assert len(lists) >= 6
    names = {name for names in lists for name in names.split()}
    assert names - set(VARIANTS) == set()
    assert {"zero3_compile_layers_mb2x_gas8", "zero3_compile_layers_savegelu_mb2x_gas8", "zero3_compile_layers_gas16",
            "zero3_nobias_compile_layers_gas16", "amp_mb2x_gas8", "amp_gas16"} <= names
