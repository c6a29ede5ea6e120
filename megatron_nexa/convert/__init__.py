"""Checkpoint conversion: ZeRO → fp32 PyTorch → Hugging Face and back. Imports only config and model
(DeepSpeed's consolidation is imported lazily, inside ``zero_to_torch``)."""
