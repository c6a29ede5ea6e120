#!/bin/bash
# slurm/submit.sh PRESET [sbatch options…]: submit nexa.sbatch with a named preset (slurm/presets/*.env), or with a
# preset file given by its path (e.g. one `nexa-plan --write-config DIR` wrote).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  echo "usage: slurm/submit.sh PRESET|FILE.env [sbatch options]   presets: $(ls "$here/presets" | sed 's/\.env$//' | tr '\n' ' ')"
  echo "Submits slurm/nexa.sbatch with the preset's nodes, GPUs, time, CONFIG and DS_CONFIG (slurm/presets/PRESET.env)."
  exit 0
fi
preset="${1:?usage: slurm/submit.sh PRESET [sbatch options] (presets: $(ls "$here/presets" | sed 's/\.env$//' | tr '\n' ' '))}"
shift
if [ -f "$here/presets/$preset.env" ]; then
  file="$here/presets/$preset.env"
elif [[ "$preset" == *.env ]] && [ -f "$preset" ]; then
  file="$preset" preset="$(basename "$preset" .env)"
else
  echo "no preset $preset in $here/presets, and no preset file $preset" >&2; exit 2
fi
set -a; source "$file"; set +a
args=(--job-name="nexa-$preset" --nodes="$NODES" --ntasks-per-node="$GPUS_PER_NODE" --time="$TIME")
[ "${USE_GPUS:-1}" = 1 ] && args+=(--gpus-per-node="$GPUS_PER_NODE")
[ -n "${PARTITION:-}" ] && args+=(--partition="$PARTITION")
export LOG_DIR="${LOG_DIR:-logs}"
mkdir -p "$LOG_DIR"  # sbatch opens the job's output file before the script runs
args+=(--output="$LOG_DIR/%x-%j.out")
exec sbatch --export=ALL "${args[@]}" "$@" "$here/nexa.sbatch"
