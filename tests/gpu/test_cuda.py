"""The CUDA path: bf16 megatron-core encoder against the fp32 reference (local layers, and Transformer Engine's where
it is installed), the spectral mask under the fused SDPA kernels, and the real DeepSpeed ZeRO-3 engine on NCCL.
Skipped without a GPU (CI has none); ``benchmarks/gpu_check.sh`` runs them on a GPU machine."""
import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from megatron_nexa.config import AttentionBackend, TransformerImpl, load_config
from megatron_nexa.tokens import TokenType
from tests.spectra import batch, pair_tokens, spectrum_tokens

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

REPO = Path(__file__).resolve().parents[2]
SEQ = 258  # [CLS] [PREC] + 256 peaks, the pretraining length


def width_3b(layers: int, **changes):
    cfg = load_config(REPO / "configs/model/nexa_3b.yaml").model
    return dataclasses.replace(cfg, num_layers=layers, **changes)


def spectra(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = [spectrum_tokens(rng, int(rng.integers(40, 257)), SEQ, precursor=float(rng.uniform(300, 900)))
            for _ in range(n - 1)]
    return batch(rows + [pair_tokens(rng, 100, 120, SEQ)])


def cuda(inputs):
    return tuple(t.cuda() for t in inputs)


def relative_error(x: torch.Tensor, ref: torch.Tensor, valid: torch.Tensor) -> float:
    d = (x.float() - ref)[valid]
    return float(d.norm() / ref[valid].norm())


NO_TE = importlib.util.find_spec("transformer_engine") is None


@pytest.mark.parametrize("backend, impl", [
    (AttentionBackend.SDPA, TransformerImpl.LOCAL), (AttentionBackend.LOCAL, TransformerImpl.LOCAL),
    pytest.param(AttentionBackend.SDPA, TransformerImpl.TE, marks=pytest.mark.skipif(
        NO_TE, reason="model.transformer_impl: te needs Transformer Engine (transformer_engine[pytorch])"))])
def test_bf16_megatron_encoder_matches_fp32_reference(parallel, backend, impl):
    """bf16 error of the megatron encoder ≈ the bf16 error of the plain reference itself (same weights), with the
    local layers and, where Transformer Engine is installed, its fused modules (``model.transformer_impl: te``);
    the backward runs and its gradients are finite."""
    from megatron_nexa.model.encoder import NexaEncoder
    from megatron_nexa.model.layer_specs import canonical_state_dict
    from megatron_nexa.model.reference import ReferenceEncoder

    cfg = width_3b(2, attention_backend=backend, transformer_impl=impl)
    torch.manual_seed(0)
    megatron = NexaEncoder(cfg, params_dtype=torch.bfloat16).cuda().to(torch.bfloat16).eval()
    state = {k: v.float() for k, v in canonical_state_dict(megatron.state_dict()).items()}
    reference = ReferenceEncoder(cfg).cuda().eval()
    reference.load_state_dict(state, strict=True)
    reference_bf16 = ReferenceEncoder(cfg).cuda().to(torch.bfloat16).eval()
    reference_bf16.load_state_dict(state, strict=True)
    inputs = cuda(spectra(6))
    valid = inputs[0] != TokenType.PAD
    with torch.no_grad():
        want = reference(*inputs)
        got = megatron(*inputs)
        plain_bf16 = reference_bf16(*inputs)
    err, floor = relative_error(got, want, valid), relative_error(plain_bf16, want, valid)
    cosine = torch.nn.functional.cosine_similarity(got.float()[valid], want[valid], dim=-1)
    print(f"{backend.value}, {impl.value}: relative error {err:.4f} (plain bf16 reference: {floor:.4f}); "
          f"min cosine {cosine.min():.5f}")
    assert err <= 2 * floor + 1e-3, (err, floor)
    assert err < 0.03 and cosine.min() > 0.995
    megatron.train()
    megatron(*inputs).float().pow(2).mean().backward()
    grads = [p.grad for p in megatron.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_fp32_megatron_encoder_equals_reference_on_cuda(parallel):
    from megatron_nexa.model.encoder import NexaEncoder
    from megatron_nexa.model.layer_specs import canonical_state_dict
    from megatron_nexa.model.reference import ReferenceEncoder

    cfg = width_3b(2)
    torch.manual_seed(0)
    megatron = NexaEncoder(cfg).cuda().eval()
    reference = ReferenceEncoder(cfg).cuda().eval()
    reference.load_state_dict(canonical_state_dict(megatron.state_dict()), strict=True)
    inputs = cuda(spectra(4, seed=1))
    valid = inputs[0] != TokenType.PAD
    with torch.no_grad():
        got, want = megatron(*inputs), reference(*inputs)
    err, worst = relative_error(got, want, valid), (got - want)[valid].abs().max().item()
    print(f"fp32: relative error {err:.2e}, max abs {worst:.2e} (TF32 matmul "
          f"{torch.backends.cuda.matmul.allow_tf32}, cuDNN {torch.backends.cudnn.allow_tf32})")
    assert err <= 1e-3, (err, worst)  # the same math in fp32: well below bf16's ~6e-3


def _kernels():
    from torch.nn.attention import SDPBackend

    return {"efficient": SDPBackend.EFFICIENT_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}


@pytest.mark.parametrize("kernel", ["efficient", "cudnn"])
def test_spectral_mask_honoured_by_fused_kernel(parallel, kernel):
    """One bf16 layer at the 3B width, SDPA forced onto one fused kernel: a peak outside a query's window
    changes nothing at that query, a peak inside does; windows never cross [SEP]."""
    from torch.nn.attention import sdpa_kernel

    from megatron_nexa.model.encoder import NexaEncoder

    cfg = width_3b(1)
    torch.manual_seed(0)
    model = NexaEncoder(cfg, params_dtype=torch.bfloat16).cuda().to(torch.bfloat16).eval()
    half = cfg.local_window // 2
    rng = np.random.default_rng(3)
    base = batch([spectrum_tokens(rng, 200, SEQ), pair_tokens(rng, 100, 100, SEQ)])
    target = 2 + 100

    def changed(row, index):
        tt, mz, inten, seg = (t.clone() for t in base)
        mz[row, index] += 7.3
        inten[row, index] = 0.123
        with torch.no_grad():
            return (model(*cuda((tt, mz, inten, seg))) - model(*cuda(base)))[row].float().abs().amax(-1)

    try:
        with sdpa_kernel([_kernels()[kernel]]):
            inside = changed(0, target + half)
            outside = changed(0, target + half + 1)
            first_b = 2 + 100 + 2  # pair row: [CLS][PREC] a0..a99 [SEP][PREC] b0..
            across = changed(1, first_b)
    except RuntimeError as e:
        if "No available kernel" in str(e) or "No viable backend" in str(e):
            pytest.skip(f"{kernel} SDPA kernel does not take this boolean mask here: {str(e)[:200]}")
        raise
    assert inside[target] > 1e-3 and inside[0] > 1e-3, "inside the window, and [CLS], must see the change"
    assert outside[target] == 0.0, f"a peak outside the window leaked into the query: {outside[target]}"
    assert outside[0] > 1e-3 and outside[1] > 1e-3, "[CLS] and [PREC] see every peak"
    assert across[2 + 99] == 0.0 and across[1] == 0.0, "a window or [PREC] crossed [SEP]"
    assert across[first_b + 1] > 1e-3 and across[0] > 1e-3


def test_zero3_engine_trains_on_nccl(parallel):
    """The real engine (megatron-core encoder, DeepSpeed ZeRO-3, bf16) on CUDA/NCCL: loss falls on a fixed batch."""
    import torch.distributed as dist

    from megatron_nexa.engine.setup import build, destroy
    from megatron_nexa.testing import engine_step, synthetic_batch

    cfg = load_config(REPO / "configs/model/small.yaml",
                      ["train.micro_batch_size=16", "train.global_batch_size=16", "optim.warmup_steps=5",
                       "optim.lr=1e-3", "train.train_steps=40"])
    built = build(cfg, str(REPO / "ds_configs/zero3.json"))
    assert built.device.type == "cuda" and dist.get_backend() == "nccl"
    data = synthetic_batch(built.cfg, 16, seed=7).to(built.device)
    losses = [engine_step(built, data).item() for _ in range(40)]
    destroy(built.engine)
    assert all(np.isfinite(losses)), losses
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


def test_one_rank_zero3_fetch_does_not_drain_the_gpu(parallel, tmp_path):
    """``compat.deepspeed.OneRankFetch``, which ``build`` installs on one rank: DeepSpeed's own one-rank fetch syncs the
    host once per fetched module (``torch/cuda/streams.py``; docs/decisions/0003-one-rank-fetch.md); ours does not,
    same losses."""
    import json

    from megatron_nexa.compat.deepspeed import OneRankFetch as one_rank_fetch
    from megatron_nexa.engine.setup import build, destroy
    from megatron_nexa.testing import engine_step, host_waits, synthetic_batch
    from tests.conftest import zero3_every_parameter_partitioned

    ds = zero3_every_parameter_partitioned()
    # No prefetch: the small model fits one prefetch bucket, so DeepSpeed would fetch it all through one handle and
    # wait once a step (2 waits either way on an H200); the 3B's layers each take their own handle (47 waits a step).
    ds["zero_optimization"]["stage3_prefetch_bucket_size"] = 0
    (tmp_path / "ds.json").write_text(json.dumps(ds))
    cfg = load_config(REPO / "configs/model/small.yaml", ["train.micro_batch_size=8", "train.global_batch_size=8"])
    found = {}
    for mode in ("ours", "deepspeed"):
        built = build(cfg, str(tmp_path / "ds.json"))
        assert one_rank_fetch.installed()
        if mode == "deepspeed":
            one_rank_fetch.uninstall()
        data = synthetic_batch(built.cfg, 8, seed=3).to(built.device)
        losses = [engine_step(built, data).item() for _ in range(3)]
        waits = host_waits(lambda: engine_step(built, data))
        destroy(built.engine)
        one_rank_fetch.install()
        found[mode] = losses, sum(n for where, n in waits.items() if where.startswith("streams.py"))
    # each layer is a leaf module, fetched at least once a step; one other stream sync a step is DeepSpeed's step's
    assert found["deepspeed"][1] - found["ours"][1] >= cfg.model.num_layers, found
    assert np.allclose(found["ours"][0], found["deepspeed"][0], rtol=1e-2), found


def test_model_and_losses_never_wait_for_the_gpu(parallel):
    """torch's sync debug mode raises at any op that makes the host wait for the GPU: none in the forward pass,
    the losses or the backward pass (``tests/unit/test_host_sync.py`` is CI's check of the same, without CUDA)."""
    from megatron_nexa.losses import pretraining_terms
    from megatron_nexa.model.encoder import NexaEncoder
    from megatron_nexa.model.pretraining import NexaSpecForPretraining
    from tests.spectra import ALL_TERMS, mixed_batch

    cfg = load_config(REPO / "configs/model/tiny.yaml")
    torch.manual_seed(0)
    model = NexaSpecForPretraining(cfg.model, NexaEncoder(cfg.model)).cuda().train()
    batch = mixed_batch(cfg).pin_memory().to("cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        terms = pretraining_terms(batch, model(*batch.model_inputs()), ALL_TERMS)
        terms["loss"].backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert {"retention_order", "contrastive", "cls_spectrum"} <= set(terms)
    assert torch.isfinite(terms["loss"])
