"""The megatron-core CPU shims: applied only without CUDA, reversible, and sufficient."""
import dataclasses

import torch

from megatron_nexa.compat import megatron as cpu_compat


def test_not_applied_when_cuda_is_available(monkeypatch, parallel):
    cpu_compat.remove_cpu_shims()
    try:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert cpu_compat.apply_cpu_shims() is False
        assert not cpu_compat.shims_applied()
    finally:
        monkeypatch.undo()
        assert cpu_compat.apply_cpu_shims() is True
    assert cpu_compat.shims_applied()


def test_shims_are_needed_and_sufficient(parallel, tiny_cfg):
    """Without them megatron's local attention and recompute fail on CPU; with them they run."""
    from megatron.core import parallel_state

    from megatron_nexa.config import AttentionBackend, Recompute
    from megatron_nexa.model.encoder import NexaEncoder
    from tests.spectra import random_batch

    cfg = dataclasses.replace(tiny_cfg.model, attention_backend=AttentionBackend.LOCAL, recompute=Recompute.FULL)
    model = NexaEncoder(cfg).train()
    inputs = random_batch(0)
    cpu_compat.remove_cpu_shims()
    parallel_state.get_global_memory_buffer().buffer.clear()
    try:
        failed = False
        try:
            model(*inputs).sum().backward()
        except (AssertionError, RuntimeError):
            failed = True
        assert failed, "megatron-core ran on CPU without the shims: are they still needed?"
    finally:
        cpu_compat.apply_cpu_shims()
    model.zero_grad()
    model(*inputs).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_transformer_engine_names_map_to_local_names():
    from megatron_nexa.model.layer_specs import canonical_state_dict

    te = {"transformer.layers.0.self_attention.linear_qkv.layer_norm_weight": 1,
          "transformer.layers.0.self_attention.linear_qkv.weight": 2,
          "transformer.layers.0.self_attention.linear_qkv._extra_state": None,
          "transformer.layers.0.mlp.linear_fc1.layer_norm_bias": 3}
    assert canonical_state_dict(te) == {"transformer.layers.0.input_layernorm.weight": 1,
                                        "transformer.layers.0.self_attention.linear_qkv.weight": 2,
                                        "transformer.layers.0.pre_mlp_layernorm.bias": 3}
