"""Model math: embeddings, spectral mask, megatron-core encoder, plain-PyTorch reference, heads.

No DeepSpeed, no engine, no data imports here (a test enforces it).
"""
