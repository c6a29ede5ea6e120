"""NexaEncoder: spectrum embeddings → megatron-core TransformerBlock (spectral mask) → final LayerNorm.

Needs megatron's ``parallel_state`` initialised (``engine.distributed.init_parallel``). Hidden states
are ``[b, s, h]`` at the interface; megatron's ``[s, b, h]`` stays inside.
"""
import torch
import torch.nn.functional as F
from megatron.core.transformer.transformer_block import TransformerBlock
from megatron.core.transformer.transformer_config import TransformerConfig
from torch import nn

from megatron_nexa.config import ConfigError, ModelConfig, Recompute, TransformerImpl
from megatron_nexa.model.attention_mask import spectral_attention_mask
from megatron_nexa.model.embeddings import SpectrumEmbedding
from megatron_nexa.model.layer_specs import layer_spec, transformer_engine_available


def transformer_config(cfg: ModelConfig, params_dtype: torch.dtype = torch.float32,
                       use_fusions: bool | None = None) -> TransformerConfig:
    """megatron-core's config for our layer. Its bias-dropout-add fusion defaults on CUDA."""
    if use_fusions is None:
        use_fusions = torch.cuda.is_available()
    recompute = {
        Recompute.NONE: {},
        Recompute.SELECTIVE: dict(recompute_granularity="selective", recompute_modules=["core_attn"]),
        Recompute.FULL: dict(recompute_granularity="full", recompute_method="uniform", recompute_num_layers=1),
    }[cfg.recompute]
    return TransformerConfig(
        num_layers=cfg.num_layers,
        hidden_size=cfg.hidden_size,
        ffn_hidden_size=cfg.ffn_hidden_size,
        num_attention_heads=cfg.num_attention_heads,
        hidden_dropout=cfg.hidden_dropout,
        attention_dropout=cfg.attention_dropout,
        layernorm_epsilon=cfg.layernorm_epsilon,
        init_method_std=cfg.init_method_std,
        activation_func=F.gelu,
        add_bias_linear=cfg.linear_bias,
        normalization="LayerNorm",
        params_dtype=params_dtype,
        bf16=params_dtype == torch.bfloat16,
        use_cpu_initialization=not torch.cuda.is_available(),
        bias_activation_fusion=False,  # megatron's fused bias-GELU is the tanh approximation; the model's is exact
        bias_dropout_fusion=use_fusions,
        masked_softmax_fusion=False,
        persist_layer_norm=False,
        **recompute,
    )


class NexaEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig, params_dtype: torch.dtype = torch.float32):
        """``cfg.transformer_impl`` picks the layers; ``te`` without Transformer Engine installed is a config error."""
        super().__init__()
        use_transformer_engine = cfg.transformer_impl == TransformerImpl.TE
        if use_transformer_engine and not transformer_engine_available():
            raise ConfigError("model.transformer_impl: 'te' needs Transformer Engine (pip install "
                              "transformer_engine[pytorch]); 'local' needs nothing more", "model.transformer_impl")
        self.cfg = cfg
        self.embedding = SpectrumEmbedding(cfg)
        self.transformer = TransformerBlock(transformer_config(cfg, params_dtype),
                                            layer_spec(cfg, use_transformer_engine), post_layer_norm=True)

    def forward(self, token_type: torch.Tensor, mz: torch.Tensor, intensity: torch.Tensor,
                segment: torch.Tensor) -> torch.Tensor:
        mask = spectral_attention_mask(token_type, segment, self.cfg.local_window)
        x = self.embedding(token_type, mz, intensity).transpose(0, 1).contiguous()
        x = self.transformer(x, attention_mask=mask)
        return x.transpose(0, 1)

    def compile_layers(self, **compile_options) -> None:
        """``torch.compile`` each transformer layer's forward, as torchtitan compiles each block: the layers share
        one compiled graph (same code, parameters as inputs), in which LayerNorm, bias, GELU and residual adds
        fuse. Module hooks, such as ZeRO-3's gather and release around each layer, run outside it, eagerly, so
        the graph never breaks on them; compiling the whole engine instead breaks on every hook and recompiles
        them per layer."""
        for layer in self.transformer.layers:
            layer.forward = torch.compile(layer.forward, **compile_options)
