"""tools/compare_runs.py: identical runs pass, one differing step fails and is named, a missing run is exit 2."""
import json
import subprocess
import sys

from tests.conftest import REPO


def write(run, losses):
    run.mkdir()
    lines = [{"step": s, "loss": v} for s, v in losses.items()] + [{"step": 2, "event": "checkpoint", "message": "x"}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(m) for m in lines) + "\n")


def compare(*args):
    return subprocess.run([sys.executable, "tools/compare_runs.py", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True)


def test_identical_and_differing_runs(tmp_path):
    write(tmp_path / "a", {1: 8.5, 2: 8.25, 3: 8.0})
    write(tmp_path / "b", {1: 8.5, 2: 8.25, 3: 8.0, 4: 7.9})
    write(tmp_path / "c", {1: 8.5, 2: 8.250001, 3: 8.0})
    same = compare(tmp_path / "a", tmp_path / "b")
    assert same.returncode == 0 and "3 steps in both (1..3), 0 differ" in same.stdout
    differ = compare(tmp_path / "a", tmp_path / "c")
    assert differ.returncode == 1 and "1 differ, largest absolute difference 1e-06, first at step 2" in differ.stdout
    missing = compare(tmp_path / "a", tmp_path / "nowhere")
    assert missing.returncode == 2 and "metrics.jsonl" in missing.stderr and "Traceback" not in missing.stderr
