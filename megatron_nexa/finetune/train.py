"""``nexa-finetune``: the pretrained encoder + a task head, trained through DeepSpeed like pretraining.

The encoder is frozen for ``unfreeze_after`` steps (``None``: throughout) by giving its parameter group a
learning rate of 0: every parameter stays in the optimiser, so unfreezing needs no rebuild under any ZeRO
stage. ``random_init`` trains the same architecture from fresh weights: the baseline that shows what
pretraining adds. The test split shares no structure with training. Each task is scored there beside a baseline
from the same run: the training-set bit frequencies (fingerprint), the per-system training mean (RT,
CCS), or the encoder before fine-tuning (contrastive retrieval).
"""
import json
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from megatron_nexa.config import to_plain
from megatron_nexa.finetune.config import FinetuneConfig, Task
from megatron_nexa.convert.from_hf import read_hf
from megatron_nexa.downstream.heads import FingerprintHead, GaussianHead
from megatron_nexa.downstream.metrics import (MIN_CALIBRATION_ROWS, cosine_rows, regression, regression_rows,
                                             regression_summary, std_scale, tanimoto_rows)
from megatron_nexa.downstream.retrieval import embedding_similarity, first_hits, hit_rates
from megatron_nexa.engine.optim import warmup_cosine
from megatron_nexa.finetune.data import batch_tensors, contrastive_batches, load_split
from megatron_nexa.losses import info_nce
from megatron_nexa.model.heads import ContrastiveHead


class TaskModel(nn.Module):
    """Encoder → ``[CLS]`` → head; ``group`` is the LC-system code for RT."""

    def __init__(self, encoder: nn.Module, head: nn.Module, task: Task):
        super().__init__()
        self.encoder, self.head, self.task = encoder, head, task

    def forward(self, token_type, mz, intensity, segment, group):
        cls = self.encoder(token_type, mz, intensity, segment)[:, 0]
        if self.task in (Task.RT, Task.CCS):
            return self.head(cls, group if self.task == Task.RT else None)
        return self.head(cls)


def build_model(cfg: FinetuneConfig, groups: int) -> TaskModel:
    from megatron_nexa.model.encoder import NexaEncoder

    state, mcfg, _ = read_hf(cfg.init)
    encoder = NexaEncoder(mcfg)
    if cfg.random_init:  # the baseline: same architecture and head, no pretrained weight
        state = {}
    else:
        missing, unexpected = encoder.load_state_dict(
            {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}, strict=False)
        if unexpected or any(not k.endswith("_extra_state") for k in missing):
            raise ValueError(f"{cfg.init}: encoder weights do not fit (missing {missing}, unexpected {unexpected})")
    if cfg.task == Task.FINGERPRINT:
        head = FingerprintHead(mcfg.hidden_size, cfg.n_bits)
    elif cfg.task == Task.CONTRASTIVE:  # start from the pretraining projector
        head = ContrastiveHead(mcfg)
        if state:
            head.load_state_dict({k.removeprefix("contrastive."): v for k, v in state.items()
                                  if k.startswith("contrastive.")})
    else:
        head = GaussianHead(mcfg.hidden_size, groups=groups if cfg.task == Task.RT else 0)
    return TaskModel(encoder, head, cfg.task)


def _ds_config(path: str, cfg: FinetuneConfig, world: int, model: nn.Module) -> dict:
    """The DeepSpeed JSON with the fine-tuning batch filled in (no accumulation, clipping at 1.0), and the
    model's own ZeRO-3 leaf modules where it says "auto"."""
    from megatron_nexa.engine.ds_config import fill_batch_settings, load_ds_config, with_leaf_modules

    ds = fill_batch_settings(load_ds_config(path), {
        "train_micro_batch_size_per_gpu": (cfg.micro_batch_size, "micro_batch_size"),
        "gradient_accumulation_steps": (1, "nexa-finetune (no accumulation)"),
        "train_batch_size": (cfg.micro_batch_size * world, "micro_batch_size x data-parallel size"),
        "gradient_clipping": (1.0, "nexa-finetune's clipping")}, world, source=path)
    ds.pop("activation_checkpointing", None)  # recompute is a pretraining setting
    return with_leaf_modules(ds, model, source=path)


class Finetuner:
    def __init__(self, cfg: FinetuneConfig, ds_config: str):
        import deepspeed

        from megatron_nexa.engine.setup import init_distributed

        init_distributed(cfg.seed)
        self.cfg, self.rank = cfg, dist.get_rank()
        self.train, self.scaler = load_split(cfg, "train")
        self.test, _ = load_split(cfg, "test", self.scaler)
        # RT/CCS intervals are scaled on the validation split (structure-disjoint) before the test is scored
        self.val = load_split(cfg, "val", self.scaler)[0] if cfg.task in (Task.RT, Task.CCS) else None
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, groups=len(self.scaler.index) if self.scaler else 0)
        self.max_peaks = model.encoder.cfg.max_peaks
        ds = _ds_config(ds_config, cfg, dist.get_world_size(), model)
        if ds.get("bf16", {}).get("enabled"):
            model = model.to(torch.bfloat16)
        head = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
        encoder = [p for n, p in model.named_parameters() if n.startswith("encoder.")]
        optimizer = torch.optim.AdamW([{"params": head, "lr": cfg.lr}, {"params": encoder, "lr": 0.0}],
                                      weight_decay=cfg.weight_decay)
        self.engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds)
        self.rng = np.random.default_rng(cfg.seed + self.rank)
        self.device = self.engine.device

    def _inputs(self, idx: np.ndarray, split):
        return tuple(t.to(self.device) for t in batch_tensors([split.items[i] for i in idx], self.max_peaks)) + (
            torch.from_numpy(split.group[idx]).to(self.device),)

    def loss(self, idx: np.ndarray) -> torch.Tensor:
        out = self.engine(*self._inputs(idx, self.train))
        if self.cfg.task == Task.FINGERPRINT:
            target = torch.from_numpy(self.train.target[idx]).float().to(self.device)
            return F.binary_cross_entropy_with_logits(out.float(), target)
        mean, log_var = out
        target = torch.from_numpy(self.train.target[idx]).to(self.device)
        return F.gaussian_nll_loss(mean.float(), target, log_var.float().exp())

    def contrastive_loss(self, a: np.ndarray, b: np.ndarray) -> torch.Tensor:
        z = self.engine(*self._inputs(np.concatenate([a, b]), self.train)).float()
        return info_nce(z[: len(a)], z[len(a):], self.cfg.temperature)["contrastive"]

    def set_lrs(self, step: int) -> float:
        """The head's and (once unfrozen) the encoder's learning rate at ``step``; returns the encoder's."""
        c = self.cfg
        head = warmup_cosine(step, c.warmup_steps, c.steps, c.lr, c.lr * c.final_lr_fraction)
        encoder = 0.0
        if c.unfreeze_after is not None and step >= c.unfreeze_after:
            encoder = warmup_cosine(step - c.unfreeze_after, c.warmup_steps, c.steps - c.unfreeze_after,
                                    c.encoder_lr, c.encoder_lr * c.final_lr_fraction)
        groups = self.engine.optimizer.param_groups
        groups[0]["lr"], groups[1]["lr"] = head, encoder
        return encoder

    def run(self) -> dict:
        c = self.cfg
        before = self.evaluate()[0] if c.task == Task.CONTRASTIVE else None
        pairs = contrastive_batches(self.train.keys, c.micro_batch_size // 2, self.rng) \
            if c.task == Task.CONTRASTIVE else None
        for step in range(c.steps):
            encoder_lr = self.set_lrs(step)
            if pairs is not None:
                loss = self.contrastive_loss(*next(pairs))
            else:
                loss = self.loss(self.rng.choice(len(self.train.items), c.micro_batch_size, replace=False))
            self.engine.backward(loss)
            self.engine.step()
            if self.rank == 0 and ((step + 1) % c.log_interval == 0 or step + 1 == c.steps):
                print(f"step {step + 1}/{c.steps} loss {loss.item():.4f} encoder lr {encoder_lr:.1e}", flush=True)
        metrics, rows = self.evaluate()
        results = {"task": c.task.value, "train": len(self.train.items), "train_dropped": self.train.dropped,
                   "test": len(self.test.items), "test_dropped": self.test.dropped, **metrics}
        if before is not None:
            results["before fine-tuning"] = before
        self.save(results, rows)
        return results

    @torch.no_grad()
    def predict(self, split) -> list:
        self.engine.eval()
        outs = []
        for start in range(0, len(split.items), self.cfg.micro_batch_size):
            idx = np.arange(start, min(start + self.cfg.micro_batch_size, len(split.items)))
            out = self.engine(*self._inputs(idx, split))
            outs.append(tuple(o.float().cpu() for o in out) if isinstance(out, tuple) else out.float().cpu())
        self.engine.train()
        return outs

    def evaluate(self) -> tuple[dict, dict[str, np.ndarray]]:
        """The test split's metrics beside the run's baseline, and the per-row scores behind them (with each
        row's structure key), which ``finetune.report`` pairs across encoders and seeds."""
        c, test = self.cfg, self.test
        outs = self.predict(test)
        if c.task == Task.FINGERPRINT:
            prob = torch.sigmoid(torch.cat(outs)).numpy()
            freq = np.broadcast_to(self.train.target.mean(0), prob.shape)

            def scores(p):
                return {"fingerprint_tanimoto": tanimoto_rows(p > 0.5, test.target),
                        "fingerprint_cosine": cosine_rows(p, test.target.astype(float))}

            rows = scores(prob)
            return _means(rows) | {"baseline (training bit frequencies)": _means(scores(freq))}, rows | {
                "keys": test.keys}
        if c.task == Task.CONTRASTIVE:
            queries, first = first_hits(embedding_similarity(torch.cat(outs).numpy()), test.keys)
            return hit_rates(first), {"hit@1": (first < 1).astype(float), "keys": test.keys[queries]}
        mean, std = _gaussian(outs)
        factor = self.interval_scale()
        groups, unit = test.groups_raw, self.scaler.scale(test.groups_raw)
        pred = self.scaler.inverse(groups, mean)
        rows = regression_rows(pred, std * unit * factor, test.raw)
        raw = regression_summary(regression_rows(pred, std * unit, test.raw))
        base = regression(self.scaler.inverse(groups, np.zeros_like(mean)), unit, test.raw)
        return regression_summary(rows) | {"coverage_68_raw": raw["coverage_68"], "coverage_95_raw": raw["coverage_95"],
                                           "std_scale": factor, "calibration_rows": len(self.val.items),
                                           "baseline (training mean per group)": base}, rows | {"keys": test.keys}

    def interval_scale(self) -> float:
        """The factor on predicted standard deviations that fits the validation split (1.0 if it is too small)."""
        if len(self.val.items) < MIN_CALIBRATION_ROWS:
            return 1.0
        mean, std = _gaussian(self.predict(self.val))
        return std_scale(mean, std, self.val.target)

    def save(self, results: dict, rows: dict[str, np.ndarray]) -> None:
        import deepspeed
        from safetensors.torch import save_file

        params = list(self.engine.module.parameters())
        stage3 = self.engine.zero_optimization_stage() == 3
        with deepspeed.zero.GatheredParameters(params, enabled=stage3):
            state = {k: v.detach().float().cpu().contiguous() for k, v in self.engine.module.state_dict().items()
                     if not k.endswith("_extra_state")}
        if self.rank != 0:
            return
        out = Path(self.cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_file(state, str(out / "model.safetensors"))
        (out / "finetune.json").write_text(json.dumps(to_plain(self.cfg), indent=1))
        (out / "results.json").write_text(json.dumps(results, indent=1))
        np.savez(out / "rows.npz", **{k: v.astype(str) if k == "keys" else v for k, v in rows.items()})


def _gaussian(outs: list) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (standardised units) from the Gaussian head's batched outputs."""
    return torch.cat([m for m, _ in outs]).numpy(), np.exp(0.5 * torch.cat([v for _, v in outs]).numpy())


def _means(rows: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(v.mean()) for k, v in rows.items()}

