"""The repository's layout rules: tests never import ``benchmarks/`` (shared code lives in ``megatron_nexa/testing.py``
or ``tests/``; a test runs a benchmark as a subprocess); code and configs carry no development history (no citations
of a results log, no session numbers, no dated narrative: a one-line reason or a decision record instead); no large
file is tracked."""
import ast
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.history_check import history

SCANNED = ("megatron_nexa", "benchmarks", "tests", "configs", "ds_configs", "slurm")
THIS = Path(__file__).resolve()  # its own examples of what the checks catch are not scanned
CODE = (".py", ".sh", ".yaml", ".yml", ".json", ".md", ".txt")  # .md/.txt: the notes beside recorded results
MAX_BYTES = 500_000


def repo_files(*folders: str) -> list[Path]:
    """Files git tracks, or would (untracked, not ignored), under ``folders``; without git, every file there."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "--", *folders], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
        return sorted(REPO / line for line in out.splitlines() if (REPO / line).is_file())
    except (OSError, subprocess.CalledProcessError):  # a copy without .git: skip what .gitignore names
        skip = {"__pycache__", "runs", "data_out", "wandb", "logs", "hf", "build", "dist"}
        return sorted(p for f in folders for p in (REPO / f).rglob("*") if p.is_file()
                      and not any(part in skip or part.startswith(".") or part.endswith(".egg-info")
                                  for part in p.relative_to(REPO).parts))


# --- tests never import benchmarks/ --------------------------------------------------------------------------

CODE_IMPORT = re.compile(r"^\s*(from\s+benchmarks[\s.]|import\s+(\w+\s*,\s*)*benchmarks\b)", re.M)
LOADERS = ("run_path", "run_module", "spec_from_file_location", "import_module", "SourceFileLoader", "__import__",
           "addsitedir")


def _mentions_benchmarks(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Constant) and isinstance(n.value, str) and "benchmarks" in n.value
               for n in ast.walk(node))


def _call_name(func: ast.AST) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _loads(call: ast.Call) -> bool:
    """A call that loads code from, or puts on the import path, what it names: a loader, or sys.path.insert/…"""
    name, func = _call_name(call.func), call.func
    on_path = (name in ("insert", "append", "extend") and isinstance(func, ast.Attribute)
               and ast.unparse(func.value).endswith("path"))
    return (name in LOADERS or on_path) and _mentions_benchmarks(call)


def benchmark_imports(source: str) -> list[str]:
    """Every way ``source`` brings ``benchmarks/`` code into a Python process, one line each: import statements,
    importlib/runpy/__import__ calls naming it, sys.path or PYTHONPATH changes naming it, and code strings (for
    ``python -c`` or a driver script) that import it. Running ``python benchmarks/x.py`` as a subprocess is not one."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] == "benchmarks"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "benchmarks":
            found.append(f"line {node.lineno}: from {node.module} import …")
        elif isinstance(node, ast.Call) and _loads(node):
            found.append(f"line {node.lineno}: {_call_name(node.func)}(… benchmarks …)")
        elif isinstance(node, (ast.Assign, ast.AugAssign)) and _mentions_benchmarks(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any("sys.path" in ast.unparse(t) or "PYTHONPATH" in ast.unparse(t) for t in targets):
                found.append(f"line {node.lineno}: {ast.unparse(targets[0])} names benchmarks")
        elif isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "PYTHONPATH"
                                                and _mentions_benchmarks(v) for k, v in zip(node.keys, node.values)):
            found.append(f"line {node.lineno}: PYTHONPATH names benchmarks")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE_IMPORT.search(node.value):
            found.append(f"line {node.lineno}: a code string imports benchmarks")
    return found


def test_no_test_imports_benchmarks():
    bad = {str(p.relative_to(REPO)): found for p in repo_files("tests") if p.suffix == ".py" and p != THIS
           for found in [benchmark_imports(p.read_text())] if found}
    assert bad == {}


@pytest.mark.parametrize("source", [
    "from benchmarks.train_step import synthetic_batch",
    "import benchmarks.gpu_step as g",
    "import os, benchmarks",
    "def f():\n    from benchmarks import gpu_step",
    "import importlib\nm = importlib.import_module('benchmarks.gpu_step')",
    "m = __import__('benchmarks.gpu_step')",
    "import sys\nsys.path.insert(0, str(REPO / 'benchmarks'))\nimport gpu_step",
    "import sys\nsys.path += ['benchmarks']",
    "import runpy\nrunpy.run_path('benchmarks/plan_memory.py')",
    "import importlib.util as u\ns = u.spec_from_file_location('g', REPO / 'benchmarks' / 'gpu_step.py')",
    "env = {'PYTHONPATH': 'benchmarks'}",
    "DRIVER = '''\nimport json\nfrom benchmarks.train_step import engine_step\n'''",
    "subprocess.run([sys.executable, '-c', 'import benchmarks.gpu_variants'])",
])
def test_the_checker_catches_each_way_in(source):
    assert benchmark_imports(source), source


@pytest.mark.parametrize("source", [
    "subprocess.run([sys.executable, 'benchmarks/gpu_step.py', '--model', 'tiny'])",
    "cmd = ['python']\ncmd.append('benchmarks/host_step.py')",
    "script = (REPO / 'benchmarks/gpu_check.sh').read_text()",
    "from megatron_nexa.testing import synthetic_batch  # shared with benchmarks/",
    "import sys\nsys.path.insert(0, str(REPO))",
])
def test_the_checker_lets_subprocess_runs_and_reads_through(source):
    assert benchmark_imports(source) == []


# --- no history in code, configs and recorded JSON -------------------------------------------------------------

def test_no_history_in_code_configs_or_recorded_json():
    checkers = {THIS, REPO / "tests/unit/test_docs.py", REPO / "tests/history_check.py"}  # they spell out the words
    bad = {str(p.relative_to(REPO)): found for p in repo_files(*SCANNED) if p.suffix in CODE and p not in checkers
           for found in [history(p.read_text(errors="replace"), p.suffix in (".json", ".md", ".txt"))] if found}
    assert bad == {}


@pytest.mark.parametrize("line, flagged", [
    ("# the host bounds the forward (benchmarks/RESULTS.md §8)", True),
    ("# see RESULTS §22", True),
    ("# measured on an H100 (§24, §26)", True),
    ("# card §6.2 says on", False),
    ("# Nexa-Spec-3B (model card §3.1, §6)", False),
    ("note: 'zero3.json of sessions 2-4'", True),
    ("# made in session 18", True),
    ("# 30.9 in the previous run", True),
    ("# run 1 of the H200 check", True),
    ("# zero3.json before 2026-11-26", True),
    ("# H200, 2026-11-27: 2 waits either way", True),
    ("GELU_SAVED = {'benchmarks/results/2026-11-27-h200-whole-7b-gelu-recompute/run1.json'}", False),
    ("# the run's last step", False),
    ('@pytest.fixture(scope="session")', False),
])
def test_the_history_check_catches_what_it_should(line, flagged):
    assert bool(history(line)) == flagged, history(line)


def test_recorded_json_keeps_its_measurement_date():
    assert history('{"date": "2026-11-27 14:02 UTC"}', json_file=True) == []
    assert history('{"note": "as zero3.json was before 2026-11-26"}', json_file=True)


# --- no large files ---------------------------------------------------------------------------------------------

def test_no_tracked_file_over_500_kb():
    big = {str(p.relative_to(REPO)): p.stat().st_size for p in repo_files(".") if p.stat().st_size > MAX_BYTES}
    assert big == {}, "large artefacts belong outside the repository (or a doc must show them)"
