#!/bin/bash
# slurm/submit.sh PRESET [sbatch options…]: submit nexa.sbatch with a named preset (slurm/presets/*.env).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  echo "usage: slurm/submit.sh PRESET [sbatch options]   presets: $(ls "$here/presets" | sed 's/\.env$//' | tr '\n' ' ')"
  echo "Submits slurm/nexa.sbatch with the preset's nodes, GPUs, time, CONFIG and DS_CONFIG (slurm/presets/PRESET.env)."
  exit 0
fi
preset="${1:?usage: slurm/submit.sh PRESET [sbatch options] (presets: $(ls "$here/presets" | sed 's/\.env$//' | tr '\n' ' '))}"
shift
[ -f "$here/presets/$preset.env" ] || { echo "no preset $preset in $here/presets" >&2; exit 2; }
set -a; source "$here/presets/$preset.env"; set +a
args=(--job-name="nexa-$preset" --nodes="$NODES" --ntasks-per-node="$GPUS_PER_NODE" --time="$TIME")
[ "${USE_GPUS:-1}" = 1 ] && args+=(--gpus-per-node="$GPUS_PER_NODE")
[ -n "${PARTITION:-}" ] && args+=(--partition="$PARTITION")
export LOG_DIR="${LOG_DIR:-logs}"
mkdir -p "$LOG_DIR"  # sbatch opens the job's output file before the script runs
args+=(--output="$LOG_DIR/%x-%j.out")
exec sbatch --export=ALL "${args[@]}" "$@" "$here/nexa.sbatch"
