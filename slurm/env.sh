# Shared by the Slurm scripts: rank layout from SLURM_JOB_NODELIST, and NCCL settings for InfiniBand.

# NCCL over InfiniBand: set these in the preset or the environment; empty means NCCL's own detection.
#   NCCL_IB_HCA        HCAs to use, e.g. "mlx5_0,mlx5_1" (default: all)
#   NCCL_SOCKET_IFNAME interface for bootstrap / TCP, e.g. "ib0" or "^lo,docker" (default: auto)
#   NCCL_IB_DISABLE    1 forces TCP (default 0)
#   NCCL_DEBUG         INFO to see the chosen transport (default WARN)
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
export NCCL_IB_DISABLE="${NCCL_IB_DISABLE:-0}"
for var in NCCL_IB_HCA NCCL_SOCKET_IFNAME NCCL_IB_GID_INDEX NCCL_NET_GDR_LEVEL; do
  [ -n "${!var:-}" ] && export "$var"
done
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

# The first node of the allocation, as an address: its NodeAddr when Slurm has one (names may not resolve).
nexa_master_addr() {
  local node addr
  node="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)"
  addr="$(scontrol show node "$node" | tr ' ' '\n' | sed -n 's/^NodeAddr=//p' | head -n1)"
  echo "${addr:-$node}"
}

# A DeepSpeed hostfile ("host slots=N" per node) for the allocation.
nexa_hostfile() {
  local slots="$1" node
  for node in $(scontrol show hostnames "$SLURM_JOB_NODELIST"); do
    echo "$node slots=$slots"
  done
}
