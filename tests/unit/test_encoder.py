"""The megatron-core encoder: spectral mask by perturbation, gradients, recompute, reference equality."""
import dataclasses

import numpy as np
import pytest
import torch

from megatron_nexa.config import AttentionBackend, Recompute
from megatron_nexa.tokens import TokenType
from tests.spectra import batch, pair_tokens, random_batch, spectrum_tokens

BACKENDS = [AttentionBackend.SDPA, AttentionBackend.LOCAL]


def one_layer(cfg, backend=AttentionBackend.SDPA):
    from megatron_nexa.model.encoder import NexaEncoder

    torch.manual_seed(0)
    return NexaEncoder(dataclasses.replace(cfg.model, num_layers=1, attention_backend=backend)).eval()


def perturb(inputs, index):
    tt, mz, inten, seg = (t.clone() for t in inputs)
    gen = torch.Generator().manual_seed(index)
    mz[0, index] += 5.0 + 20.0 * torch.rand((), generator=gen)
    inten[0, index] = torch.rand((), generator=gen)
    return tt, mz, inten, seg


def changed(model, base, index):
    with torch.no_grad():
        return (model(*perturb(base, index)) - model(*base))[0].abs().amax(-1)  # [s]: change per token


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_spectrum_mask_by_perturbation(parallel, tiny_cfg, backend):
    model = one_layer(tiny_cfg, backend)
    half = tiny_cfg.model.local_window // 2  # tiny: window 8 → 4 on each side
    base = batch([spectrum_tokens(np.random.default_rng(0), 20, 26)])
    target = 2 + 10  # peak 10 (after [CLS], [PREC])

    inside = changed(model, base, target + half)
    assert inside[target] > 1e-4, "a peak inside the window must change the output"
    assert inside[0] > 1e-4 and inside[1] > 1e-4, "[CLS] and [PREC] see every peak"

    outside = changed(model, base, target + half + 1)
    assert outside[target] == 0.0, "a peak outside the window must not change the output at all"
    assert outside[0] > 1e-4 and outside[1] > 1e-4

    # [PREC]'s precursor m/z is seen by every peak, near or far.
    prec = changed(model, base, 1)
    assert (prec[2:22] > 1e-6).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_never_leaks(parallel, tiny_cfg, backend):
    model = one_layer(tiny_cfg, backend)
    base = batch([spectrum_tokens(np.random.default_rng(1), 10, 20)])  # 12 real tokens, 8 pads

    def noisy_pads(module, args, out):
        noise = torch.randn(out.shape, generator=torch.Generator().manual_seed(3)) * 10
        return out + noise * (base[0] == TokenType.PAD)[..., None]

    with torch.no_grad():
        clean = model(*base)
        handle = model.embedding.register_forward_hook(noisy_pads)
        try:
            dirty = model(*base)
        finally:
            handle.remove()
    real = base[0][0] != TokenType.PAD
    assert torch.equal(clean[0, real], dirty[0, real])
    assert torch.isfinite(dirty).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_pair_windows_stay_inside_their_spectrum(parallel, tiny_cfg, backend):
    model = one_layer(tiny_cfg, backend)
    base = batch([pair_tokens(np.random.default_rng(2), 10, 10, 28)])
    last_a, sep, prec_b, first_b = 11, 12, 13, 14  # [CLS][PREC] a0..a9 [SEP] [PREC] b0..b9
    assert base[0][0, sep] == TokenType.SEP and base[0][0, first_b] == TokenType.PEAK

    delta = changed(model, base, first_b)  # b0 is 3 positions from a9: inside the window by index
    assert delta[last_a] == 0.0, "a window must not cross [SEP] into the other spectrum"
    assert delta[1] == 0.0, "spectrum A's [PREC] is global within A only"
    assert delta[first_b + 1] > 1e-4 and delta[prec_b] > 1e-4
    assert delta[0] > 1e-4, "[CLS] sees both spectra"

    delta_a = changed(model, base, last_a)
    assert delta_a[first_b] == 0.0 and delta_a[prec_b] == 0.0
    assert delta_a[last_a - 1] > 1e-4 and delta_a[sep] > 1e-4


@pytest.mark.parametrize("recompute", list(Recompute))
def test_every_parameter_gets_a_gradient(parallel, tiny_cfg, recompute):
    from megatron_nexa.model.encoder import NexaEncoder
    from megatron_nexa.model.pretraining import NexaSpecForPretraining

    cfg = dataclasses.replace(tiny_cfg.model, recompute=recompute)
    torch.manual_seed(0)
    model = NexaSpecForPretraining(cfg, NexaEncoder(cfg)).train()
    tt, mz, inten, seg = random_batch(0)
    tt[:, 3] = TokenType.MASK
    out = model(tt, mz, inten, seg)
    loss = (out.mz_logits.square().mean() + out.intensity_logits.square().mean()
            + out.retention_logit.square().mean() + out.contrastive.sum() + out.hidden.square().mean())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"


def test_recompute_gives_identical_gradients(parallel, tiny_cfg):
    from megatron_nexa.model.encoder import NexaEncoder

    grads = {}
    inputs = random_batch(1)
    for recompute in (Recompute.NONE, Recompute.FULL, Recompute.SELECTIVE):
        torch.manual_seed(0)
        model = NexaEncoder(dataclasses.replace(tiny_cfg.model, recompute=recompute)).train()
        model(*inputs).square().mean().backward()
        grads[recompute] = {n: p.grad.clone() for n, p in model.named_parameters()}
    for recompute in (Recompute.FULL, Recompute.SELECTIVE):
        for name, g in grads[Recompute.NONE].items():
            torch.testing.assert_close(grads[recompute][name], g, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("backend, linear_bias", [(AttentionBackend.SDPA, True), (AttentionBackend.LOCAL, True),
                                                  (AttentionBackend.SDPA, False)])
def test_megatron_encoder_equals_reference(parallel, tiny_cfg, backend, linear_bias):
    from megatron_nexa.model.encoder import NexaEncoder
    from megatron_nexa.model.layer_specs import canonical_state_dict
    from megatron_nexa.model.reference import ReferenceEncoder

    cfg = dataclasses.replace(tiny_cfg.model, attention_backend=backend, linear_bias=linear_bias)
    torch.manual_seed(0)
    megatron = NexaEncoder(cfg).eval()
    reference = ReferenceEncoder(cfg).eval()
    reference.load_state_dict(canonical_state_dict(megatron.state_dict()), strict=True)
    inputs = batch([spectrum_tokens(np.random.default_rng(i), 5 + 3 * i, 30) for i in range(3)]
                   + [pair_tokens(np.random.default_rng(9), 8, 12, 30)])
    with torch.no_grad():
        diff = (megatron(*inputs) - reference(*inputs)).abs().max().item()
    assert diff <= 1e-5, diff

    # and back: reference weights into a fresh megatron encoder
    torch.manual_seed(1)
    other = NexaEncoder(cfg).eval()
    missing, unexpected = other.load_state_dict(reference.state_dict(), strict=False)
    assert not unexpected and all(k.endswith("_extra_state") for k in missing)
    with torch.no_grad():
        assert (other(*inputs) - reference(*inputs)).abs().max().item() <= 1e-5


def test_encoder_traces_as_one_graph(parallel, tiny_cfg):
    """torch.compile sees the whole megatron-core encoder as one graph: the row-parallel linear does not warn on
    every call as megatron's does (``NexaRowParallelLinear``), token types compare as ints, the mask needs no
    factories."""
    from megatron_nexa.model.encoder import NexaEncoder

    torch.manual_seed(0)
    model = NexaEncoder(tiny_cfg.model).train()
    inputs = random_batch(2)
    traced = torch.compile(model, backend="eager", fullgraph=True)
    torch.testing.assert_close(traced(*inputs), model(*inputs))


@pytest.mark.parametrize("row", [False, True])
def test_linears_at_tp1_are_megatrons_product_without_its_autograd_functions(parallel, tiny_cfg, row, monkeypatch):
    from megatron.core.tensor_parallel import layers
    from megatron.core.tensor_parallel.layers import ColumnParallelLinear, RowParallelLinear

    from megatron_nexa.model.encoder import transformer_config
    from megatron_nexa.model.layer_specs import NexaColumnParallelLinear, NexaRowParallelLinear

    config = transformer_config(tiny_cfg.model)
    theirs, ours = (RowParallelLinear, NexaRowParallelLinear) if row else (ColumnParallelLinear, NexaColumnParallelLinear)
    extra = {"input_is_parallel": True} if row else {"gather_output": False}
    make = lambda cls: cls(16, 24, config=config, init_method=torch.nn.init.normal_, bias=True, skip_bias_add=False,
                           **extra)
    a, b = make(theirs), make(ours)
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 3, 16, requires_grad=True)
    out_a = a(x)[0]
    out_a.square().sum().backward()
    grads_a = [p.grad.clone() for p in a.parameters()] + [x.grad.clone()]
    x.grad = None
    calls = []
    monkeypatch.setattr(layers, "linear_with_grad_accumulation_and_async_allreduce",
                        lambda *args, **kw: calls.append(1))
    out_b = b(x)[0]
    out_b.square().sum().backward()
    assert not calls, "TP=1 takes the plain product"
    torch.testing.assert_close(out_b, out_a)
    for g_b, g_a in zip([p.grad for p in b.parameters()] + [x.grad], grads_a):
        torch.testing.assert_close(g_b, g_a)


@pytest.mark.parametrize("bias", [False, True])
def test_linear_backward_reads_the_weight_an_engine_holds_now(bias):
    """ZeRO-3 swaps a weight's ``.data`` for an empty tensor after the forward pass and gathers it again before
    the backward pass. ``LinearKeepingWeight``'s backward reads the re-gathered weight, so nothing of the
    released one is kept alive; torch's own linear saves a view of the released storage and reads that."""
    from megatron_nexa.model.layer_specs import linear

    def run(product):
        torch.manual_seed(0)
        w = torch.nn.Parameter(torch.randn(6, 4))
        b = torch.nn.Parameter(torch.randn(6)) if bias else None
        x = torch.randn(3, 5, 4, requires_grad=True)
        out = product(x, w, b)
        gathered = w.data
        w.data = torch.empty(0)  # released after the forward pass
        w.data = 2 * gathered  # gathered again (a new tensor) before the backward pass
        out.sum().backward()
        return x.grad, torch.ones(15, 6) @ (2 * gathered), torch.ones(15, 6) @ gathered

    grad, from_live, from_released = run(linear)
    torch.testing.assert_close(grad.reshape(15, 4), from_live)
    grad, from_live, from_released = run(torch.nn.functional.linear)
    torch.testing.assert_close(grad.reshape(15, 4), from_released)  # torch's linear held on to the released weight


def test_linear_gradients_and_paths():
    """Same values and gradients as torch's linear; torch's kernel where no backward follows or autocast is on."""
    from megatron_nexa.model.layer_specs import LinearKeepingWeight, linear

    torch.manual_seed(0)
    x = torch.randn(2, 7, 8, requires_grad=True)
    w, b = torch.nn.Parameter(torch.randn(5, 8)), torch.nn.Parameter(torch.randn(5))
    grads = []
    for product in (torch.nn.functional.linear, linear):
        out = product(x, w, b)
        out.square().sum().backward()
        grads.append([out.detach()] + [t.grad.clone() for t in (x, w, b)])
        for t in (x, w, b):
            t.grad = None
    for ours, torchs in zip(*grads[::-1]):
        torch.testing.assert_close(ours, torchs)
    assert type(linear(x, w, b).grad_fn).__name__ == "LinearKeepingWeightBackward"
    with torch.no_grad():
        assert linear(x, w, b).grad_fn is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = linear(x, w, b)
    assert out.dtype == torch.bfloat16 and not isinstance(out.grad_fn, LinearKeepingWeight._backward_cls)


@pytest.mark.parametrize("bias", [False, True])
def test_gelu_linear_is_linear_of_gelu_and_rereads_the_weight(bias):
    """``GeluLinear`` gives ``linear(gelu(x))``'s values and gradients, saving ``x`` and the Parameter: its backward
    reads the weight the engine has gathered by then, like ``LinearKeepingWeight``'s."""
    from megatron_nexa.model.layer_specs import GeluLinear

    torch.manual_seed(0)
    x = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)
    w = torch.nn.Parameter(torch.randn(6, 8, dtype=torch.float64))
    b = torch.nn.Parameter(torch.randn(6, dtype=torch.float64)) if bias else None
    grads = []
    for product in (lambda: torch.nn.functional.linear(torch.nn.functional.gelu(x), w, b),
                    lambda: GeluLinear.apply(x, w, b)):
        out = product()
        out.square().sum().backward()
        grads.append([out.detach()] + [t.grad.clone() for t in (x, w, b) if t is not None])
        for t in (x, w, b):
            if t is not None:
                t.grad = None
    for ours, torchs in zip(*grads[::-1]):
        torch.testing.assert_close(ours, torchs)
    out = GeluLinear.apply(x, w, b)
    gathered = w.data
    w.data = torch.empty(0, dtype=torch.float64)  # released after the forward pass, gathered again as 2 w
    w.data = 2 * gathered
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.ops.aten.gelu_backward(torch.ones(3, 5, 6, dtype=torch.float64) @ w, x))


def test_recompute_gelu_changes_memory_not_math(parallel, tiny_cfg):
    """The same weights with and without ``recompute_gelu``: equal outputs and gradients, and the only saved tensor
    that differs is the GELU's output, ``ffn`` wide per token and layer."""
    from megatron_nexa.model.encoder import NexaEncoder
    from tests.unit.test_cluster_plan import saved_bytes

    inputs = random_batch(1)
    runs = {}
    for recompute_gelu in (False, True):
        torch.manual_seed(0)
        model = NexaEncoder(dataclasses.replace(tiny_cfg.model, recompute_gelu=recompute_gelu)).train()
        out = {}
        saved = saved_bytes(model, lambda: out.setdefault("y", model(*inputs)))
        out["y"].square().mean().backward()
        runs[recompute_gelu] = saved, out["y"].detach(), {n: p.grad.clone() for n, p in model.named_parameters()}
    (kept, y_kept, g_kept), (recomputed, y, g) = runs[False], runs[True]
    torch.testing.assert_close(y, y_kept, rtol=0, atol=0)
    for name, grad in g_kept.items():
        torch.testing.assert_close(g[name], grad, rtol=1e-6, atol=1e-7, msg=name)
    b, s = inputs[0].shape
    cfg = tiny_cfg.model
    assert kept - recomputed == cfg.num_layers * b * s * cfg.ffn_hidden_size * 4  # fp32 here: 4 bytes


def test_compiled_layers_recompute_the_gelu_too(parallel, tiny_cfg):
    """Under ``train.compile`` (inductor) AOTAutograd's partitioner decides what the layer saves: it must not move
    the GELU back into the forward and save its output, as it does when the backward computes the GELU as the
    forward does (``gelu_weight_grad`` keeps it in the backward)."""
    from megatron_nexa.model.encoder import NexaEncoder
    from tests.unit.test_cluster_plan import saved_bytes

    torch._dynamo.reset()
    inputs = random_batch(1)
    torch.manual_seed(0)
    model = NexaEncoder(tiny_cfg.model).train()
    eager = saved_bytes(model, lambda: model(*inputs))
    model.compile_layers()
    model(*inputs)  # compiles
    assert saved_bytes(model, lambda: model(*inputs)) == eager


def test_compiled_layers_share_one_graph_and_match_eager(parallel, tiny_cfg):
    from torch._dynamo.utils import counters

    from megatron_nexa.model.encoder import NexaEncoder

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_cfg.model, num_layers=3)
    eager, compiled = NexaEncoder(cfg).train(), NexaEncoder(cfg).train()
    compiled.load_state_dict(eager.state_dict())
    compiled.compile_layers(backend="aot_eager")
    inputs = random_batch(2)
    for model in (eager, compiled):
        model(*inputs).square().mean().backward()
    torch.testing.assert_close(compiled(*inputs), eager(*inputs))
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(b.grad, a.grad, msg=name)
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])  # three layers, one graph
    assert set(compiled.state_dict()) == set(eager.state_dict())


def test_transformer_engine_is_an_explicit_choice(parallel, tiny_cfg, monkeypatch):
    """``te`` is never switched on by an import that succeeds, and without Transformer Engine it is a config error."""
    import megatron_nexa.model.encoder as encoder_module
    from megatron_nexa.config import ConfigError, TransformerImpl
    from megatron_nexa.model.encoder import NexaEncoder

    monkeypatch.setattr(encoder_module, "transformer_engine_available", lambda: True)
    local = NexaEncoder(tiny_cfg.model)
    assert "TE" not in type(local.transformer.layers[0].self_attention.linear_qkv).__name__
    monkeypatch.setattr(encoder_module, "transformer_engine_available", lambda: False)
    tiny_cfg.model.transformer_impl = TransformerImpl.TE
    with pytest.raises(ConfigError, match="model.transformer_impl: 'te' needs Transformer Engine"):
        NexaEncoder(tiny_cfg.model)
