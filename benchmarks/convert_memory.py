"""Peak memory of ZeRO-3 → fp32 safetensors conversion, over the fp32 model size (goal <= 1.5x).

    python benchmarks/convert_memory.py [--hidden 1024 --layers 12] [--data DATASET_VERSION]

Trains a ~150 M-parameter model (about 600 MB in fp32) for one step in one process under ZeRO-3 to get a
real checkpoint (with Adam states, ~3x the model on disk), then runs ``nexa-convert zero-to-torch`` in a
fresh interpreter and reads its peak RSS. The interpreter with torch and DeepSpeed imported is measured
alone in the same run and reported too.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._util import child_peak_rss_mb  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--data", help="a preprocessed version to train on; default: preprocess MassBank's CC0 file now")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nexa-conv-"))
    try:
        data = args.data or str(tmp / "data/m_v1")
        if not args.data:
            subprocess.run([sys.executable, "-m", "megatron_nexa.cli.preprocess",
                            str(REPO.parent / "shared/data/massbank/massbank_lcmsms_CC0.mgf.gz"), "--out", str(tmp / "data"),
                            "--name", "m", "--version", "1", "--no-progress"], cwd=REPO, check=True, capture_output=True)
        env = {**os.environ, "DS_ACCELERATOR": "cpu"}
        subprocess.run([sys.executable, "pretrain_nexa.py", "--ds_config", "ds_configs/zero3_cpu.json", "--config",
                        "configs/test_tiny.yaml", f"--data.sources=[{{path: {data}}}]",
                        f"--train.run_dir={tmp / 'run'}", "--train.train_steps=1", "--train.micro_batch_size=1",
                        "--train.global_batch_size=1", f"--model.hidden_size={args.hidden}",
                        f"--model.ffn_hidden_size={4 * args.hidden}", f"--model.num_layers={args.layers}",
                        "--model.num_attention_heads=16", "--train.eval_batches=1"],
                       cwd=REPO, env=env, check=True, capture_output=True)
        baseline = child_peak_rss_mb("import torch, deepspeed, safetensors")
        peak = child_peak_rss_mb(f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
                                 "from megatron_nexa.convert.zero_to_torch import zero_to_torch\n"
                                 f"zero_to_torch({str(tmp / 'run')!r}, {str(tmp / 'out.safetensors')!r})")
        model_mb = (tmp / "out.safetensors").stat().st_size / 2**20
        ckpt_mb = sum(f.stat().st_size for f in (tmp / "run/checkpoints").rglob("*") if f.is_file()) / 2**20
        print(f"fp32 model {model_mb:,.0f} MB; checkpoint on disk {ckpt_mb:,.0f} MB")
        print(f"peak RSS of the conversion: {peak:,.0f} MB = {peak / model_mb:.2f}x the fp32 model (goal <= 1.5x)")
        print(f"  of which the interpreter with torch + DeepSpeed imported: {baseline:,.0f} MB; "
              f"above it: {(peak - baseline) / model_mb:.2f}x the model")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
