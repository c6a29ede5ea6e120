#!/usr/bin/env bash
# The whole GPU check in one call, for an offline machine with one CUDA GPU and a python3 that has torch:
#   bash benchmarks/gpu_check.sh OUT_DIR
# 1. installs deepspeed + megatron-core (and their few missing needs) from wheels in .whl/, made on a
#    networked machine by benchmarks/gpu_wheels.sh;
# 2. pytest tests/gpu: bf16 megatron encoder vs the fp32 reference, the spectral mask under the fused
#    SDPA kernels, the real ZeRO-3 engine on NCCL;
# 3. benchmarks/gpu_step.py: step_3b_full, the whole 3B model (FULL_LAYERS, 36) with the pilot's global batch
#    (512) as accumulated micro-batches of 64 (69.3 GiB by nexa-plan with the GELU recomputed: fits an H100),
#    so the per-step costs outside the layers (embeddings, heads, losses, optimiser) weigh what
#    they will weigh in the run; step_7b_full, the whole 7B (H200 only); then the 3B and 7B widths at 4
#    layers for the comparisons between variants: step time, TFLOP/s, MFU, peak memory beside nexa-plan's
#    prediction, against the plain-PyTorch AMP baseline;
# 4. if data_out/massbank_v2 is there (make demo's preprocessing): `deepspeed pretrain_nexa.py` on it,
#    then (stage resume) the same command again with more steps, which must resume from the checkpoint.
# Each stage has its own time limit; every stage's output goes to OUT_DIR/stages.log (headed '##### NAME'),
# JSON and the profiles beside it (at most 8 files come back from a lent GPU: 9 here on an H200 with every stage,
# 10 with VARIANTS_7B_FULL16, 8 on an H100, where step_3b_full48 replaces the 7B's: name fewer STAGES on an H200);
# the tables are printed last.
# STAGES picks stages (default: pytest step_3b_full step_3b_full48 step_7b_full step_3b step_7b pretrain; resume
# also exists, and preflight: nexa-preflight's GPU checks on this machine's GPUs; pretrain_lab_disjoint: a larger encoder
# pretrained without the held-out labs for a few minutes, judged at retrieval on the lab-disjoint test). step_3b_full48, the whole 3B at micro-batch 48, runs only under 120 GiB (an H100); step_7b_full, the
# whole 7B at MB_7B_BIG (28) and 32 without recompute (VARIANTS_7B_FULL; zero3_full_gas16 there: full recompute;
# VARIANTS_7B_FULL16 at 16), runs only on a GPU of 120 GiB or more (an H200), where step_3b_full runs VARIANTS_FULL_BIG
# instead of VARIANTS_FULL. VARIANTS_3B, VARIANTS_7B, VARIANTS_FULL, VARIANTS_FULL_BIG, VARIANTS_FULL48,
# VARIANTS_7B_FULL16, VARIANTS_7B_FULL_BIG, VARIANTS_7B_FULL and PROFILE_3B override gpu_step's variant lists
# (PROFILE_3B=' ': no profile); LIMIT_PYTEST, LIMIT_3B_FULL, LIMIT_3B_FULL48, LIMIT_7B_FULL16, LIMIT_7B_FULL_BIG,
# LIMIT_7B_FULL, LIMIT_3B, LIMIT_7B, LIMIT_PRETRAIN override the stages' time limits (seconds); TESTS_GPU picks the
# GPU tests (default tests/gpu).
set -u
OUT=$(realpath -m "${1:-gpu_out}")
mkdir -p "$OUT"
SITE=${SITE:-/tmp/nexa_site}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
  || { echo "gpu_check: wheel install failed (run benchmarks/gpu_wheels.sh on a networked machine)"; exit 1; }
export PYTHONPATH="$SITE:$PWD" PYTHONUNBUFFERED=1 DS_ACCELERATOR=cuda PYTHONWARNINGS=ignore
# DeepSpeed's op builder cannot parse an arch such as '9.0a' in TORCH_CUDA_ARCH_LIST ("invalid literal for int():
# '0a'" when it builds an op): build for the card at hand instead.
ARCH_WAS=${TORCH_CUDA_ARCH_LIST-unset}
TORCH_CUDA_ARCH_LIST=$(python3 -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())") || exit 1
export TORCH_CUDA_ARCH_LIST
want() { [[ " ${STAGES:-pytest step_3b_full step_3b_full48 step_7b_full step_3b step_7b pretrain} " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv \
  > "$OUT/summary.txt" 2>&1
echo "TORCH_CUDA_ARCH_LIST: was '$ARCH_WAS', set to '$TORCH_CUDA_ARCH_LIST'" >> "$OUT/summary.txt"

LOG="$OUT/stages.log"
stage() {  # stage NAME SECONDS CMD...: run with a time limit, its output appended to stages.log
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "##### $name" >> "$LOG"
  timeout "$limit" "$@" >> "$LOG" 2>&1
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
}

# Most wanted first (a stage cut off by its time limit keeps the rows it finished: JSON is written per
# variant); compile variants last (their first steps compile). Each variant's note: gpu_step.py --list-variants.
V3=${VARIANTS_3B:-zero3 amp amp_encoder zero3_nobias zero3_mb4x zero2 amp_compile zero3_compile_layers}
V7=${VARIANTS_7B:-zero3 amp zero3_mb4x}
# The whole models' forward under ZeRO-3 is host-bound at micro-batch 32 (3B) and 16 (7B) (docs/performance.md):
# compiled layers and layers without linear biases cut the host's work; micro-batch 64 outgrows it. With the GELU
# recomputed (docs/decisions/0004-recomputed-gelu.md) the 3B at 64 needs 69.3 GiB by nexa-plan (79.5 saving it): it
# fits an H100 too, where AMP's baseline (74.3 GiB at 48) does not; the GELU saved (savegelu) at 64 fits an H200 only.
GPU_GIB=$(python3 -c "import torch; print(torch.cuda.get_device_properties(0).total_memory >> 30)") || exit 1
if [ "$GPU_GIB" -ge 120 ]; then
  VF=${VARIANTS_FULL_BIG:-zero3_compile_layers_mb2x_gas8 zero3_compile_layers_savegelu_mb2x_gas8 amp_mb2x_gas8}
else
  VF=${VARIANTS_FULL:-zero3_compile_layers_mb2x_gas8 zero3_nobias_compile_layers_mb2x_gas8 amp_gas16}
fi
V7F16=${VARIANTS_7B_FULL16-}  # micro-batch 16: host-bound, when asked
# The 7B at a larger micro-batch (MB_7B_BIG, default 28: 135.5 GiB by nexa-plan with the GELU recomputed; nexa-plan
# has read 0.97-0.99 of every ZeRO-3 peak): where the GPU's forward outgrows the host's, as 28 x 16; then at the
# pilot's 32 (140.2 GiB by nexa-plan; 137.8 measured, 2 GiB short of the H200's whole memory). Full recompute
# (zero3_full_gas16) caps model-FLOPs MFU near 3/4 (docs/decisions/0005-no-activation-recompute-by-default.md):
# name it in VARIANTS_7B_FULL to run it.
V7FB=${VARIANTS_7B_FULL_BIG:-zero3_compile_layers_gas16 zero3_nobias_compile_layers_gas16}
V7F=${VARIANTS_7B_FULL:-zero3_compile_layers_gas16}
want pytest && stage pytest "${LIMIT_PYTEST:-80}" python3 -m pytest -q -s -p no:cacheprovider ${TESTS_GPU:-tests/gpu}
# HOST_PROFILE_FULL (default: the first variant; ' ': none): cProfile of its forwards on this machine's host, which
# bounds ZeRO-3's forward at micro-batch 32: where the host's time goes, in profile_3b_full.txt.
want step_3b_full && stage step_3b_full "${LIMIT_3B_FULL:-240}" python3 benchmarks/gpu_step.py --model nexa_3b \
  --layers "${FULL_LAYERS:-36}" --warmup 3 --steps 10 --json "$OUT/gpu_step_3b_full.json" --variants $VF \
  --host-profile ${HOST_PROFILE_FULL-${VF%% *}} --profile-out "$OUT/profile_3b_full.txt"
# Under 120 GiB (an H100) the 3B also runs at micro-batch 48 (60.8 GiB by nexa-plan, 68.5 with the GELU saved): the
# largest where the GELU saved and AMP's baseline fit beside it, to see how much of micro-batch 32's host-bound
# forward a larger batch hides.
# The global batch is 48 x 16 = 768, not the pilot's 512; per micro-batch only the update's share (1/16) depends on it.
if want step_3b_full48 && [ "$GPU_GIB" -lt 120 ]; then
  V48=${VARIANTS_FULL48:-zero3_compile_layers_gas16 zero3_compile_layers_savegelu_gas16 amp_gas16}
  stage step_3b_full48 "${LIMIT_3B_FULL48:-150}" python3 benchmarks/gpu_step.py --model nexa_3b --layers 36 \
    --micro-batch 48 --warmup 3 --steps 10 --json "$OUT/gpu_step_3b_full48.json" --variants $V48
fi
# The whole 7B fits one GPU only on an H200 (nexa-plan): without recompute at micro-batch 28 (135.5 GiB) or, just,
# 32 (140.2), the 60 % goal's best chances (no forward run twice); with full recompute at 32, 107.2 GiB.
# Expandable segments: little memory is left to fragmentation. whole_7b NAME LIMIT MICRO_BATCH WARMUP VARIANTS...:
# one stage of the whole 7B, JSON in gpu_NAME.json; nothing when no variant is named.
whole_7b() {
  local name=$1 limit=$2 mb=$3 warmup=$4; shift 4
  [ $# -gt 0 ] || return 0
  PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True stage "$name" "$limit" python3 benchmarks/gpu_step.py \
    --model nexa_7b --layers 60 --micro-batch "$mb" --warmup "$warmup" --steps 10 --json "$OUT/gpu_$name.json" --variants "$@"
}
if want step_7b_full; then
  if [ "$GPU_GIB" -ge 120 ]; then
    whole_7b step_7b_full16 "${LIMIT_7B_FULL16:-200}" 16 1 $V7F16
    whole_7b step_7b_full_big "${LIMIT_7B_FULL_BIG:-200}" "${MB_7B_BIG:-28}" 1 $V7FB
    whole_7b step_7b_full "${LIMIT_7B_FULL:-200}" 32 3 $V7F
  else
    echo "== step_7b_full: skipped, $GPU_GIB GiB on this GPU (the whole 7B needs 121.5 GiB at micro-batch 16 by nexa-plan, 107.2 with full recompute at 32)" | tee -a "$OUT/summary.txt"
  fi
fi
want step_3b && stage step_3b "${LIMIT_3B:-220}" python3 benchmarks/gpu_step.py --model nexa_3b --layers 4 \
  --json "$OUT/gpu_step_3b.json" --profile ${PROFILE_3B:-zero3 amp} --profile-out "$OUT/profile_3b.txt" --variants $V3
want step_7b && stage step_7b "${LIMIT_7B:-80}" python3 benchmarks/gpu_step.py --model nexa_7b --layers 4 \
  --json "$OUT/gpu_step_7b.json" --variants $V7

if want pretrain && [ -f data_out/massbank_v2/manifest.json ]; then
  RUN=/tmp/nexa_gpu_run; rm -rf "$RUN"
  PRETRAIN=(python3 "$SITE/bin/deepspeed" --num_gpus 1 --master_port 29511 pretrain_nexa.py
    --ds_config ds_configs/zero3.json --config configs/demo.yaml --train.run_dir="$RUN"
    --train.micro_batch_size=64 --train.global_batch_size=64 --train.wandb_mode=disabled
    --train.eval_interval=100 --train.save_interval=100 --train.log_interval=25)
  stage pretrain "${LIMIT_PRETRAIN:-80}" "${PRETRAIN[@]}" --train.train_steps=200
  want resume && stage pretrain_resume 60 "${PRETRAIN[@]}" --train.train_steps=250
fi

# pretrain_lab_disjoint (opt-in: name it in STAGES): configs/massbank_gpu_lab_disjoint.yaml (25 M parameters) on
# data_out/massbank_trainlabs_v2 (`make data-lab-disjoint`: no spectrum of the labs nexa-eval holds out) for at most
# LIMIT_LAB seconds (a time limit's SIGTERM makes the trainer save); then its newest checkpoint exported and ranked
# on nexa-eval's two retrieval libraries of data_out/massbank_v2 by benchmarks/retrieval_ablation.py, against random
# init and the binned spectrum (OUT/lab_disjoint_retrieval.json). Carry data_out: the lent GPU has no MassBank. The
# export (about 110 MB) is too large to come back, so the full nexa-eval (its baselines need matchms, ms-entropy,
# spec2vec) does not run on this model.
if want pretrain_lab_disjoint && [ -f data_out/massbank_trainlabs_v2/manifest.json ] \
    && [ -f data_out/massbank_v2/manifest.json ]; then
  LAB_RUN=/tmp/nexa_gpu_lab_disjoint; rm -rf "$LAB_RUN"
  HELDOUT=$(sed -n 's/^HELDOUT_LABS ?= //p' Makefile)
  stage pretrain_lab_disjoint "${LIMIT_LAB:-420}" python3 "$SITE/bin/deepspeed" --num_gpus 1 --master_port 29512 \
    pretrain_nexa.py --ds_config ds_configs/zero2.json --config configs/massbank_gpu_lab_disjoint.yaml \
    --train.run_dir="$LAB_RUN" --train.wandb_mode=disabled
  stage lab_disjoint_retrieval "${LIMIT_LAB_EVAL:-240}" bash -c "python3 -m megatron_nexa.cli.convert to-hf $LAB_RUN \
    $LAB_RUN/hf && python3 benchmarks/retrieval_ablation.py \
    --data data_out/massbank_v2 --holdout-labs $HELDOUT --out $OUT/lab_disjoint_retrieval.json gpu=$LAB_RUN/hf"
fi

# preflight (opt-in: name it in STAGES): nexa-preflight on every GPU of this machine under torchrun, one rank a GPU:
# device count and memory against nexa-plan's peak, CUDA and NCCL versions, and NCCL all-reduce / all-gather bus
# bandwidth within the node beside NEXA_EXPECT_INTRA_GBPS (one GPU: the NCCL check says SKIP). The data checks read
# data_out/massbank_v2 (configs/demo.yaml). LIMIT_PREFLIGHT overrides its time limit.
if want preflight; then
  NGPU=$(python3 -c "import torch; print(torch.cuda.device_count())") || NGPU=1
  stage preflight "${LIMIT_PREFLIGHT:-120}" python3 -m torch.distributed.run --standalone --nproc_per_node "$NGPU" \
    -m megatron_nexa.cli.preflight --config configs/demo.yaml --ds_config zero3.json --world-size "$NGPU" \
    --train.run_dir=/tmp/nexa_preflight_run --train.global_batch_size=$((16 * NGPU))
fi

section() { awk -v head="##### $1" '$0 == head {p = 1; next} /^##### / {p = 0} p' "$LOG" 2>/dev/null; }
ran() { grep -qx "##### $1" "$LOG" 2>/dev/null; }
echo; ran pytest && { echo "=== pytest"; section pytest | grep -E "passed|failed|error|skipped|relative error|^FAILED|^SKIPPED" | tail -15; }
ran preflight && { echo "=== preflight"; section preflight | grep -E "(PASS|FAIL|WARN|SKIP) |preflight:|rror" | tail -20; }
ran pretrain_lab_disjoint && { echo "=== pretrain_lab_disjoint"; section pretrain_lab_disjoint | grep -E "rror|^step +[0-9]+|eval step" | tail -6; section lab_disjoint_retrieval | grep -vE "Warn|warn|Loading" | tail -30; }
ran pretrain && { echo "=== pretrain"; { section pretrain; section pretrain_resume; } | grep -E "resume|final|rror|^step +[0-9]+" | tail -14; }
for w in step_3b_full step_3b_full48 step_7b_full16 step_7b_full_big step_7b_full step_3b step_7b; do
  ran $w || continue
  echo "=== gpu_step $w"; section $w | sed -n '/ width, [0-9]* layers/,$p'; section $w | grep -E "Error|error" | tail -3
done
if ls "$OUT"/gpu_step_*.json >/dev/null 2>&1; then  # every peak against nexa-plan, into summary.txt
  { echo "=== peak memory / nexa-plan"; python3 benchmarks/plan_memory.py "$OUT"/gpu_step_*.json 2>&1 | grep -v WARNING; } \
    >> "$OUT/summary.txt"
fi
cat "$OUT/summary.txt"
