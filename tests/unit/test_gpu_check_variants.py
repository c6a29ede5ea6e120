"""Every variant gpu_check.sh asks gpu_step for exists: a misspelt name would cost a stage of a lent GPU's
few minutes (the script itself only runs there)."""
import re
import subprocess
import sys

from tests.conftest import REPO, child_env


def test_every_default_variant_of_gpu_check_exists():
    listed = subprocess.run([sys.executable, "benchmarks/gpu_step.py", "--list-variants"], cwd=REPO,
                            env=child_env(DS_ACCELERATOR="cpu"), capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    variants = {line.split("\t")[0] for line in listed.stdout.splitlines() if line.strip()}
    assert {"amp", "zero3", "zero3_compile_layers_gas16"} <= variants
    script = (REPO / "benchmarks/gpu_check.sh").read_text()
    lists = re.findall(r"\$\{(?:VARIANTS_\w+|PROFILE_3B):-([^}]*)\}", script)
    assert len(lists) >= 6
    names = {name for names in lists for name in names.split()}
    assert names - variants == set()
    assert {"zero3_compile_layers_mb2x_gas8", "zero3_compile_layers_gas16", "amp_mb2x_gas8", "amp_gas16"} <= names


def test_gpu_scripts_parse_and_keep_their_default_stages():
    for script in ("benchmarks/gpu_check.sh", "benchmarks/gpu_wheels.sh"):
        parsed = subprocess.run(["bash", "-n", script], cwd=REPO, capture_output=True, text=True)
        assert parsed.returncode == 0, parsed.stderr
    stages = re.search(r'STAGES:-([^}]*)\}', (REPO / "benchmarks/gpu_check.sh").read_text())[1].split()
    assert stages == ["pytest", "step_3b_full", "step_3b_full48", "step_7b_full", "step_3b", "step_7b", "pretrain"]
