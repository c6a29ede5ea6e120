"""megatron-core ModuleSpecs for the Nexa-Spec encoder layer.

A pre-LN BERT-style layer (LayerNorm → self-attention → LayerNorm → GELU MLP) with an *arbitrary*
attention mask (the spectral mask) and our SDPA core attention by default; the MLP's GELU recomputed in the
backward rather than saved (``model.recompute_gelu``). When Transformer Engine is installed its fused
LayerNorm+Linear modules replace the local linears; ``canonical_state_dict`` maps
their parameter names back to the local ones so checkpoints stay interchangeable.
"""
import importlib.util

import torch
import torch.nn.functional as F

from megatron.core.fusions.fused_bias_dropout import get_bias_dropout_add
from megatron.core.tensor_parallel.layers import ColumnParallelLinear, RowParallelLinear
from megatron.core.transformer.attention import SelfAttention, SelfAttentionSubmodules
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.identity_op import IdentityOp
from megatron.core.transformer.mlp import MLP, MLPSubmodules
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.torch_norm import WrappedTorchNorm
from megatron.core.transformer.transformer_layer import TransformerLayer, TransformerLayerSubmodules

from megatron_nexa.compat import torch as torch_compat
from megatron_nexa.compat.megatron import OwnProductAtTP1, PositionalHiddenStates, quiet_unknown_mlp
from megatron_nexa.config import AttentionBackend, ModelConfig
from megatron_nexa.model.core_attention import SDPAttention

_CORE_ATTENTION = {AttentionBackend.SDPA: SDPAttention, AttentionBackend.LOCAL: DotProductAttention}

# Transformer Engine folds each LayerNorm into the following linear.
_TE_TO_LOCAL = {
    "self_attention.linear_qkv.layer_norm_weight": "input_layernorm.weight",
    "self_attention.linear_qkv.layer_norm_bias": "input_layernorm.bias",
    "mlp.linear_fc1.layer_norm_weight": "pre_mlp_layernorm.weight",
    "mlp.linear_fc1.layer_norm_bias": "pre_mlp_layernorm.bias",
}


class NexaTransformerLayer(PositionalHiddenStates, TransformerLayer):
    """megatron-core's layer, gathered whole by a parameter-sharding engine (a ZeRO-3 leaf module): one gather and
    one set of hooks per layer instead of one per attention and MLP (docs/decisions/0002-layer-sized-leaf-modules.md).
    That needs ``hidden_states`` passed positionally (``PositionalHiddenStates``): without it the hook that releases
    the layer's parameters after its backward pass never runs, and its backward fails on a released parameter."""

    gathered_whole = True

    def __init__(self, *args, **kwargs):
        with quiet_unknown_mlp():  # NexaMLP is not megatron's
            super().__init__(*args, **kwargs)


class LinearKeepingWeight(torch.autograd.Function):
    """``F.linear`` whose backward keeps the weight *Parameter* itself, not ``weight.t()``.

    torch's own linear saves a transposed view of the weight for its backward. A view holds the storage it was
    made from, so when a sharding engine swaps a parameter's ``.data`` for an empty tensor after the forward
    pass (DeepSpeed ZeRO-3 releasing a gathered weight), the gathered copy stays alive until the backward pass:
    every layer's full weights at once, which is what ZeRO-3 is there to avoid. Saving the Parameter, as
    megatron-core's and DeepSpeed's own linear Functions do, lets it go; the backward reads whatever the engine
    has gathered by then. The product is torch's kernel itself (``compat.torch.linear``), under any wrapper that
    replaced ``F.linear``."""

    @staticmethod
    def forward(ctx, input, weight, bias):
        ctx.save_for_backward(input, weight)
        ctx.has_bias = bias is not None
        return torch_compat.linear(input, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        input, weight = ctx.saved_tensors
        grad_input = grad.matmul(weight) if ctx.needs_input_grad[0] else None
        grad_2d = grad.reshape(-1, grad.shape[-1])
        grad_weight = grad_2d.t().matmul(input.reshape(-1, input.shape[-1])) if ctx.needs_input_grad[1] else None
        grad_bias = grad_2d.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_input, grad_weight, grad_bias


@torch.library.custom_op("nexa::gelu_weight_grad", mutates_args=())
def gelu_weight_grad(grad_2d: torch.Tensor, pre_2d: torch.Tensor) -> torch.Tensor:
    """``grad_2dᵀ · gelu(pre_2d)``, the GELU re-run inside. One opaque op taking the gradient, so that under
    ``torch.compile`` the GELU stays in the backward: AOTAutograd's partitioner may otherwise merge a GELU of the
    forward's values with the forward's own and save its output, since a matmul of the backward reads it
    (docs/decisions/0004-recomputed-gelu.md)."""
    return grad_2d.t().matmul(F.gelu(pre_2d))


@gelu_weight_grad.register_fake
def _(grad_2d, pre_2d):
    return grad_2d.new_empty(grad_2d.shape[1], pre_2d.shape[1])


class GeluLinear(torch.autograd.Function):
    """``linear(gelu(x))`` that saves the GELU's input ``x``, not its output: the product's backward needs the GELU's
    output for the weight's gradient, the GELU's backward needs ``x``, and saving both is 16·s·b·h bytes a layer of the
    34 autograd kept (docs/decisions/0004-recomputed-gelu.md). The backward recomputes the GELU (``gelu_weight_grad``),
    one elementwise pass over the MLP's widest tensor; the weight is kept as the Parameter, as in ``LinearKeepingWeight``."""

    @staticmethod
    def forward(ctx, pre, weight, bias):
        ctx.save_for_backward(pre, weight)
        ctx.has_bias = bias is not None
        return torch_compat.linear(F.gelu(pre), weight, bias)

    @staticmethod
    def backward(ctx, grad):
        pre, weight = ctx.saved_tensors
        grad_2d = grad.reshape(-1, grad.shape[-1])
        grad_pre = torch.ops.aten.gelu_backward(grad.matmul(weight), pre) if ctx.needs_input_grad[0] else None
        grad_weight = gelu_weight_grad(grad_2d, pre.reshape(-1, pre.shape[-1])) if ctx.needs_input_grad[1] else None
        grad_bias = grad_2d.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_pre, grad_weight, grad_bias


def _own_backward(input) -> bool:
    """Where our autograd Functions replace torch's kernels: a backward will follow, and autocast is off (it casts
    torch's ops, not a Function's saved inputs)."""
    return torch.is_grad_enabled() and not torch.is_autocast_enabled(input.device.type)


def linear(input, weight, bias=None):
    """The product of our linears at tensor-parallel size 1: ``LinearKeepingWeight`` where a backward will
    follow, torch's kernel where none will (inference) or where autocast must see the op (``_own_backward``)."""
    if _own_backward(input):
        return LinearKeepingWeight.apply(input, weight, bias)
    return torch_compat.linear(input, weight, bias)


class NexaColumnParallelLinear(OwnProductAtTP1, ColumnParallelLinear):
    """At TP = 1, ``linear`` instead of megatron's product (``OwnProductAtTP1``): the same product with the least
    Python we found that keeps ZeRO-3's memory promise, since the host bounds the step at the pilot's micro-batches
    (``benchmarks/host_time.py``). Also without megatron's "copy to the tensor-parallel region", an identity that is
    one more Python autograd Function per call (``disable_grad_reduce``: there is no other rank to reduce with)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.tp_size == 1:
            self.disable_grad_reduce = True

    def own_product(self, input, weight, bias):
        return linear(input, weight, bias)


class NexaRowParallelLinear(OwnProductAtTP1, RowParallelLinear):
    """At TP = 1, ``linear`` instead of megatron's product, as ``NexaColumnParallelLinear``."""

    def own_product(self, input, weight, bias):
        return linear(input, weight, bias)


class NexaGeluRowParallelLinear(NexaRowParallelLinear):
    """The MLP's second linear, given the GELU's *input*: with ``recompute_gelu`` (``model.recompute_gelu``), where a
    backward will follow at TP = 1, the GELU and the product are one ``GeluLinear``, which saves that input alone;
    otherwise the GELU runs first and the product saves its output, as megatron-core's MLP does."""

    def __init__(self, *args, recompute_gelu: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.recompute_gelu = recompute_gelu

    def own_product(self, input, weight, bias):
        if self.recompute_gelu and _own_backward(input):
            return GeluLinear.apply(input, weight, bias)
        return linear(F.gelu(input), weight, bias)

    def megatron_input(self, input):
        return F.gelu(input)


class NexaMLP(MLP):
    """megatron-core's MLP handing its second linear the GELU's input (``NexaGeluRowParallelLinear``), so that the
    GELU can be recomputed in the backward rather than saved. The GELU is the exact one, as in the reference encoder
    and the Hugging Face export: megatron's fused bias-GELU is the tanh approximation."""

    def forward(self, hidden_states, **kwargs):
        intermediate, bias = self.linear_fc1(hidden_states)
        if bias is not None:
            intermediate = intermediate + bias
        return self.linear_fc2(intermediate)


def transformer_engine_available() -> bool:
    return importlib.util.find_spec("transformer_engine") is not None


def layer_spec(cfg: ModelConfig, use_transformer_engine: bool = False) -> ModuleSpec:
    core_attention = _CORE_ATTENTION[cfg.attention_backend]
    if use_transformer_engine:
        from megatron.core.extensions.transformer_engine import (
            TELayerNormColumnParallelLinear, TERowParallelLinear)
        qkv, fc1, proj, fc2 = (TELayerNormColumnParallelLinear, TELayerNormColumnParallelLinear,
                               TERowParallelLinear, TERowParallelLinear)
        input_norm = pre_mlp_norm = IdentityOp
        mlp = MLP
    else:
        qkv, fc1, proj = NexaColumnParallelLinear, NexaColumnParallelLinear, NexaRowParallelLinear
        fc2 = ModuleSpec(module=NexaGeluRowParallelLinear, params={"recompute_gelu": cfg.recompute_gelu})
        input_norm = pre_mlp_norm = WrappedTorchNorm
        mlp = NexaMLP
    return ModuleSpec(
        module=NexaTransformerLayer,
        submodules=TransformerLayerSubmodules(
            input_layernorm=input_norm,
            self_attention=ModuleSpec(
                module=SelfAttention,
                params={"attn_mask_type": AttnMaskType.arbitrary},
                submodules=SelfAttentionSubmodules(
                    linear_qkv=qkv, core_attention=core_attention, linear_proj=proj,
                    q_layernorm=IdentityOp, k_layernorm=IdentityOp,
                ),
            ),
            self_attn_bda=get_bias_dropout_add,
            pre_mlp_layernorm=pre_mlp_norm,
            mlp=ModuleSpec(module=mlp, submodules=MLPSubmodules(linear_fc1=fc1, linear_fc2=fc2)),
            mlp_bda=get_bias_dropout_add,
        ),
    )


def canonical_state_dict(state_dict: dict) -> dict:
    """Local-spec parameter names for a state dict from either spec; TE's ``_extra_state`` dropped."""
    out = {}
    for key, value in state_dict.items():
        if key.endswith("._extra_state") or key.endswith("_extra_state"):
            continue
        for te_suffix, local_suffix in _TE_TO_LOCAL.items():
            if key.endswith(te_suffix):
                key = key[: -len(te_suffix)] + local_suffix
                break
        out[key] = value
    return out
