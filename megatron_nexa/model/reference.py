"""The Nexa-Spec encoder in plain PyTorch: no megatron-core, same parameter names and math.

Used for the Hugging Face export and for inference where megatron-core is absent; a test shows it
matches ``NexaEncoder`` on the same state dict. Parameter names follow megatron's local spec, and the
fused QKV weight keeps megatron's layout: per head, rows ``[q; k; v]`` of ``head_dim`` each.
"""
import torch
import torch.nn.functional as F
from torch import nn

from megatron_nexa.config import ModelConfig
from megatron_nexa.model.attention_mask import spectral_attention_mask
from megatron_nexa.model.embeddings import SpectrumEmbedding


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.heads, self.head_dim = cfg.num_attention_heads, cfg.head_dim
        self.dropout_p = cfg.attention_dropout
        self.linear_qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size, bias=cfg.linear_bias)
        self.linear_proj = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=cfg.linear_bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        qkv = self.linear_qkv(x).view(b, s, self.heads, 3, self.head_dim).permute(3, 0, 2, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=~mask,
                                             dropout_p=self.dropout_p if self.training else 0.0)
        return self.linear_proj(out.transpose(1, 2).reshape(b, s, -1))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.linear_fc1 = nn.Linear(cfg.hidden_size, cfg.ffn_hidden_size, bias=cfg.linear_bias)
        self.linear_fc2 = nn.Linear(cfg.ffn_hidden_size, cfg.hidden_size, bias=cfg.linear_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_fc2(F.gelu(self.linear_fc1(x)))


class TransformerLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_epsilon)
        self.self_attention = SelfAttention(cfg)
        self.pre_mlp_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_epsilon)
        self.mlp = MLP(cfg)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.self_attention(self.input_layernorm(x), mask))
        return x + self.dropout(self.mlp(self.pre_mlp_layernorm(x)))


class TransformerStack(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.num_layers))
        self.final_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_epsilon)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return self.final_layernorm(x)


class ReferenceEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embedding = SpectrumEmbedding(cfg)
        self.transformer = TransformerStack(cfg)

    def forward(self, token_type: torch.Tensor, mz: torch.Tensor, intensity: torch.Tensor,
                segment: torch.Tensor) -> torch.Tensor:
        mask = spectral_attention_mask(token_type, segment, self.cfg.local_window)
        return self.transformer(self.embedding(token_type, mz, intensity), mask)
