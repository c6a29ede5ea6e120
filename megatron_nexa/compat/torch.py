"""What we rely on inside torch beyond its public API."""
import torch

from megatron_nexa.compat import require

SUPPORTED = ">=2.5,<3"  # SDPA's enable_gqa (model/core_attention.py) needs 2.5
VERSION = require("torch", SUPPORTED)

# torch's linear kernel itself, beneath any Python wrapper of ``F.linear``: DeepSpeed's ZeRO-3 replaces
# ``F.linear`` process-wide with a version that adds the bias in a second kernel.
linear = torch._C._nn.linear
