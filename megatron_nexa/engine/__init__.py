"""Training engine: process groups, DeepSpeed, the loop, checkpoints, monitoring."""
