#!/bin/bash
# Outside Slurm, the same run: slurm/launch.sh CONFIG [DS_CONFIG] [overrides…]
#   HOSTFILE=hosts  (lines "host slots=N")  → deepspeed --hostfile across machines (ssh/pdsh)
#   otherwise       → torchrun on this machine with GPUS processes (default: all visible GPUs, or 2 on CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
source slurm/env.sh
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  echo "usage: slurm/launch.sh CONFIG [DS_CONFIG] [--key=value …]   (HOSTFILE=hosts: deepspeed --hostfile; else torchrun, GPUS=N)"
  exit 0
fi
config="${1:?usage: slurm/launch.sh CONFIG [DS_CONFIG] [--key=value …]}"; shift
ds_config="ds_configs/zero3.json"
if [ $# -gt 0 ] && [[ "$1" == *.json ]]; then ds_config="$1"; shift; fi
if [ -n "${HOSTFILE:-}" ]; then
  exec deepspeed --hostfile "$HOSTFILE" --master_port "${MASTER_PORT:-29500}" \
    pretrain_nexa.py --ds_config "$ds_config" --config "$config" "$@"
fi
gpus="${GPUS:-$(python -c 'import torch; print(torch.cuda.device_count() or 2)')}"
exec torchrun --standalone --nproc_per_node "$gpus" pretrain_nexa.py --ds_config "$ds_config" --config "$config" "$@"
