"""The pretraining loop on a DeepSpeed engine: step, monitor, evaluate, checkpoint, survive failures.

Same code on 2 CPU processes (gloo) and on 16 H100s (NCCL). Per optimiser step: ``accum`` micro-batches
(forward, named loss terms, backward) then the update; non-finite gradients make DeepSpeed's ZeRO
optimiser discard the update (``was_step_applied``), after which we lower the LR and, after
``train.max_bad_steps`` in a row, stop with a clear error. SIGTERM/SIGUSR1 (Slurm pre-emption) and a first
Ctrl-C save a checkpoint and end the run cleanly; the next start resumes from the newest sound checkpoint.
A rank that fails leaves through ``abort``: it reports and exits at once instead of waiting in a collective.
"""
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from megatron_nexa.config import RunConfig
from megatron_nexa.data.batch import Batch
from megatron_nexa.data.loader import build_dataset, build_loader, check_sources, iterate
from megatron_nexa.engine.checkpoint import Checkpointer
from megatron_nexa.engine.distributed import all_reduce_host
from megatron_nexa.engine.ds_config import load_ds_config
from megatron_nexa.engine.monitor import Monitor, device_peak_tflops, model_flops_per_step
from megatron_nexa.engine.run_lock import RunLock
from megatron_nexa.engine.setup import Built, build
from megatron_nexa.losses import pretraining_terms
from megatron_nexa.tokens import TokenType

# Reduced across ranks in this fixed order (a rank whose batch had no pairs contributes count 0).
METRICS = ("loss", "masked_mz", "masked_intensity", "masked_mz_acc", "masked_intensity_acc", "retention_order",
           "retention_order_acc", "contrastive", "contrastive_acc", "cls_spectrum", "cls_spectrum_acc",
           "embedding_variance", "tokens", "rows")


def console_line(step: int, steps: int, m: dict, eta_s: float) -> str:
    """One line per log interval; terms a run does not train (no pairs or views in its batches: NaN) are left out."""
    def term(label: str, key: str) -> str:
        value = m.get(key, float("nan"))
        return f"{label} {value:.3f} (acc {m.get(key + '_acc', float('nan')):.3f}) " if math.isfinite(value) else ""

    return (f"step {step}/{steps} loss {m['loss']:.4f} " + term("mz", "masked_mz") + f"int {m['masked_intensity']:.3f} "
            + term("ro", "retention_order") + term("nce", "contrastive") + term("cls", "cls_spectrum")
            + f"lr {m['lr']:.2e} gnorm {m['grad_norm']:.3f} "
            f"{m['tokens_per_s']:,.0f} tok/s" + (f" mfu {m['mfu']:.1%}" if m.get("mfu") else "") + f" eta {eta_s / 60:.1f} min")


class TrainingAborted(RuntimeError):
    """Too many consecutive non-finite steps: lower optim.lr or look at the data."""


@dataclass
class State:
    step: int = 0
    consumed_samples: int = 0
    bad_steps: int = 0
    loss_ema: float | None = None
    target_hist: list = field(default_factory=list)  # masked m/z targets seen in training (frequency prior)


def launcher_rank() -> int:
    """This process's rank as its launcher set it, before any process group exists."""
    for var in ("RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


class Trainer:
    def __init__(self, cfg: RunConfig, ds_config: str):
        check_sources(cfg)  # config errors surface before any process group, lock or run directory exists
        load_ds_config(ds_config)
        self.lock = RunLock(cfg.train.run_dir).acquire() if launcher_rank() == 0 else None
        self.stop_requested = False
        self._install_signal_handlers()
        self.built: Built = build(cfg, ds_config)
        self._exit_on_uncaught_exception()
        self.cfg, self.engine = self.built.cfg, self.built.engine
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.run_dir = Path(self.cfg.train.run_dir)
        self.monitor = Monitor(self.cfg, self.run_dir, enabled=self.rank == 0)
        self.ckpt = Checkpointer(self.run_dir, self.cfg.train.keep_last, warn=self._warn)
        client = self.ckpt.load(self.engine)
        self.state = State(**client["trainer"]) if client else State(target_hist=[0] * self.cfg.model.mz_bins)
        self.target_hist = torch.tensor(self.state.target_hist, dtype=torch.float64)
        if client:
            self.monitor.event(self.state.step, "resume", f"from {self.ckpt.latest_tag()} "
                                                          f"({self.state.consumed_samples:,} samples consumed)")
        if self.built.one_rank_fetch:
            self.monitor.event(self.state.step, "one_rank_fetch", "ZeRO-3 on one rank: parameters fetched without "
                               "DeepSpeed's host sync per module (compat/deepspeed.py)")
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.cfg.save(self.run_dir / "config.yaml")
        self.train_set = build_dataset(self.cfg, self.cfg.data.train_split)
        self.valid_set = build_dataset(self.cfg, self.cfg.data.valid_split)
        self.last_eval: dict | None = None

    # --- one step -------------------------------------------------------------------------------------
    def _micro_step(self, host: Batch) -> dict[str, float]:
        """One forward/backward/step. What the host can count it counts on the host batch; the terms come back
        in one copy after the step, so the host never waits for the GPU mid-step."""
        targets = host.mz_target[host.mz_target >= 0]  # masked m/z targets in range (IGNORE elsewhere)
        self.target_hist += torch.bincount(targets, minlength=self.cfg.model.mz_bins)
        batch = host.to(self.built.device)
        out = self.engine(*batch.model_inputs())
        terms = pretraining_terms(batch, out, self.cfg.loss)
        self.engine.backward(terms["loss"])
        self.engine.step()
        terms["embedding_variance"] = out.cls.detach().float().var(0).mean()
        values = dict(zip(terms, torch.stack([v.detach().float() for v in terms.values()]).tolist()))
        values["tokens"] = float((host.token_type != TokenType.PAD).sum())
        values["rows"] = float(len(host))
        return values

    @staticmethod
    def _reduce(window: dict[str, list[float]]) -> dict[str, float]:
        """Means over micro-batches and ranks; ``tokens`` and ``rows`` are totals. Same shape on every rank."""
        t = torch.tensor([window.get(k, (0.0, 0.0))[i] for i in (0, 1) for k in METRICS], dtype=torch.float64)
        all_reduce_host(t)
        n = len(METRICS)
        return {k: t[i].item() if k in ("tokens", "rows") else (t[i] / t[n + i]).item() if t[n + i] > 0
                else float("nan") for i, k in enumerate(METRICS)}

    def train(self) -> State:
        cfg, st = self.cfg, self.state
        accum = self.engine.gradient_accumulation_steps()
        loader = iterate(build_loader(self.train_set, cfg, self.rank, self.world, st.consumed_samples,
                                      ignore_stop_signals=True))
        window, t_window, last_log = {}, time.perf_counter(), st.step
        while st.step < cfg.train.train_steps:
            losses = []
            for _ in range(accum):
                values = self._micro_step(next(loader))
                losses.append(values["loss"])
                for k, v in values.items():
                    if math.isfinite(v):
                        acc = window.setdefault(k, [0.0, 0.0])
                        acc[0] += v
                        acc[1] += 1
            st.step += 1
            st.consumed_samples += cfg.train.global_batch_size
            self._after_step(self.engine.was_step_applied(), sum(losses) / len(losses))
            if st.step % cfg.train.log_interval == 0 or st.step == cfg.train.train_steps:
                self._log(self._reduce(window), time.perf_counter() - t_window, st.step - last_log)
                window, t_window, last_log = {}, time.perf_counter(), st.step
            if st.step % cfg.train.eval_interval == 0:
                self.evaluate()
            stop = self._stop_agreed()
            if stop or st.step % cfg.train.save_interval == 0 or st.step == cfg.train.train_steps:
                self.save()
            if stop:
                self.monitor.event(st.step, "preempted", "signal received: checkpoint saved, exiting")
                break
        del loader  # its workers ignore SIGTERM: shut them down now, not at exit (a reference cycle can outlive us)
        if st.step == cfg.train.train_steps:
            if self.last_eval is None or self.last_eval["step"] != st.step:
                self.evaluate()
            self._summary()
            if self.rank == 0:  # tells a requeueing job script that there is nothing left to do
                (self.run_dir / "DONE").write_text(f"{st.step}\n")
        return st

    def _summary(self) -> None:
        """Rank 0: the loss-curve PNG and the final validation numbers beside the frequency prior."""
        if self.rank != 0:
            return
        try:
            from megatron_nexa.plot import plot_metrics

            png = plot_metrics(self.run_dir / "metrics.jsonl")
        except ImportError:  # matplotlib is in the [dev] extra
            png = None
        e = self.last_eval
        print(f"final (step {self.state.step}): val masked m/z accuracy {e['val_masked_mz_acc']:.4f} vs frequency prior "
              f"{e['val_prior_masked_mz_acc']:.4f}; cross-entropy {e['val_masked_mz']:.4f} vs "
              f"{e['val_prior_masked_mz']:.4f}\ncheckpoint: {self.ckpt.dir / self.ckpt.latest_tag()}\n"
              f"loss curves: {png or '(install matplotlib)'}", flush=True)

    def _after_step(self, applied: bool, loss: float) -> None:
        st, t = self.state, self.cfg.train
        if not applied or not math.isfinite(loss):
            st.bad_steps += 1
            self.built.scheduler.lower(t.bad_step_lr_factor)
            self.monitor.event(st.step, "skipped_step",
                               f"non-finite loss/gradients (loss={loss}); update skipped, LR x{t.bad_step_lr_factor} "
                               f"-> {self.built.scheduler.get_last_lr()[0]:.3g} ({st.bad_steps} in a row)")
            if st.bad_steps >= t.max_bad_steps:
                raise TrainingAborted(f"{st.bad_steps} consecutive non-finite steps at step {st.step}: lower optim.lr "
                                      f"or check the data (metrics: {self.run_dir / 'metrics.jsonl'})")
            return
        st.bad_steps = 0
        if st.loss_ema is not None and loss > t.spike_factor * st.loss_ema:
            self.monitor.event(st.step, "loss_spike", f"loss {loss:.4f} > {t.spike_factor} x running mean "
                                                      f"{st.loss_ema:.4f}")
        st.loss_ema = loss if st.loss_ema is None else 0.98 * st.loss_ema + 0.02 * loss

    def _log(self, m: dict, seconds: float, steps: int) -> None:
        st, cfg = self.state, self.cfg
        step_time = seconds / max(steps, 1)
        rows = cfg.train.global_batch_size
        flops = model_flops_per_step(cfg, rows, cfg.model.max_peaks + 2)
        peak = device_peak_tflops(cfg)
        m = dict(m, lr=self.built.scheduler.get_last_lr()[0], grad_norm=float(self.engine.get_global_grad_norm() or "nan"),
                 step_time=step_time, tokens_per_s=m.pop("tokens", 0.0) / max(seconds, 1e-9),
                 consumed_samples=st.consumed_samples, mfu=flops / step_time / (peak * 1e12 * self.world) if peak else None)
        eta = (cfg.train.train_steps - st.step) * step_time
        line = console_line(st.step, cfg.train.train_steps, m, eta)
        self.monitor.log(st.step, {k: v for k, v in m.items() if k not in ("rows",) and v is not None}, line)

    # --- evaluation -------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Masked-peak loss and accuracy on the validation split, beside a frequency-prior baseline; and the mean
        pairwise cosine of ``[CLS]`` over the first validation batch (the same spectra at every evaluation): near 1
        the embeddings have collapsed onto one direction, which the masked-peak loss alone does not show."""
        self.engine.eval()
        loader = iterate(build_loader(self.valid_set, self.cfg, self.rank, self.world, 0, train=False,
                                      ignore_stop_signals=True))
        hist = self.target_hist.clone()
        all_reduce_host(hist)
        prior = (hist + 1) / (hist + 1).sum()  # add-one smoothing: the frequency prior over m/z bins
        mode = int(torch.argmax(hist))
        sums = torch.zeros(7, dtype=torch.float64)  # loss*n, correct, n, prior nll*n, prior correct, cos sum, pairs
        for i in range(self.cfg.train.eval_batches):
            batch = next(loader).to(self.built.device)
            out = self.engine(*batch.model_inputs())
            if i == 0:
                sums[5:] += torch.tensor(pairwise_cosine_sum(out.cls), dtype=torch.float64)
            target = batch.at_masked(batch.mz_target)
            keep = target >= 0
            logits, target = out.mz_logits[keep].float(), target[keep]
            n = len(target)
            if n == 0:
                continue
            sums += torch.tensor([
                float(torch.nn.functional.cross_entropy(logits, target, reduction="sum")),
                float((logits.argmax(-1) == target).sum()), n,
                float(-torch.log(prior[target.cpu()]).sum()), float((target == mode).sum()), 0, 0], dtype=torch.float64)
        del loader  # shuts its workers down now (see train)
        all_reduce_host(sums)
        self.engine.train()
        n = max(sums[2].item(), 1)
        result = {"val_masked_mz": sums[0].item() / n, "val_masked_mz_acc": sums[1].item() / n,
                  "val_prior_masked_mz": sums[3].item() / n, "val_prior_masked_mz_acc": sums[4].item() / n,
                  "val_masked_tokens": n, "val_cls_mean_cosine": sums[5].item() / max(sums[6].item(), 1),
                  "step": self.state.step}
        self.monitor.log(self.state.step, {k: v for k, v in result.items() if k != "step"},
                         f"[eval step {self.state.step}] val masked m/z: loss {result['val_masked_mz']:.4f} "
                         f"acc {result['val_masked_mz_acc']:.3f} | frequency prior: loss "
                         f"{result['val_prior_masked_mz']:.4f} acc {result['val_prior_masked_mz_acc']:.3f} "
                         f"({int(n):,} masked peaks) | [CLS] mean cosine {result['val_cls_mean_cosine']:.3f}")
        self.last_eval = result
        return result

    # --- checkpoints and signals -------------------------------------------------------------------------
    def save(self) -> None:
        self.state.target_hist = self.target_hist.tolist()
        tag = self.ckpt.save(self.engine, self.state.step, {"trainer": vars(self.state).copy()}, self.cfg)
        self.monitor.event(self.state.step, "checkpoint", str(self.ckpt.dir / tag))

    def _warn(self, message: str) -> None:
        if dist.get_rank() == 0:
            self.monitor.event(self.state.step if hasattr(self, "state") else 0, "warning", message)

    def _install_signal_handlers(self) -> None:
        def request_stop(signum, frame):
            self.stop_requested = True
            if signum == signal.SIGINT:  # a second Ctrl-C interrupts at once, without a checkpoint
                signal.signal(signal.SIGINT, signal.default_int_handler)

        for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
            signal.signal(sig, request_stop)

    def _stop_agreed(self) -> bool:
        flag = torch.tensor([1.0 if self.stop_requested else 0.0])
        all_reduce_host(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def _exit_on_uncaught_exception(self) -> None:
        """Once the process group exists, an exception that reaches the top of this rank (one raised while a failure
        is being reported, say) ends the process as soon as its traceback is printed. Interpreter shutdown would join
        the DataLoader workers, which ignore SIGTERM so that pre-emption reaches the trainer: the rank would never
        exit, and the launcher would never end the job."""
        report = self._previous_excepthook = sys.excepthook

        def report_and_exit(*exc_info) -> None:
            report(*exc_info)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)

        sys.excepthook = report_and_exit

    def close(self) -> None:
        self.monitor.close()
        dist.barrier()
        dist.destroy_process_group()
        sys.excepthook = self._previous_excepthook
        if self.lock:
            self.lock.release()


def pairwise_cosine_sum(x: torch.Tensor) -> tuple[float, float]:
    """The sum of the cosines between every two rows of ``x``, and the number of pairs (sums add across ranks)."""
    x = torch.nn.functional.normalize(x.detach().float(), dim=-1)
    n = len(x)
    total = x.sum(0).square().sum() - x.square().sum()  # sum over i != j of x_i . x_j
    return float(total) / 2, n * (n - 1) / 2


def abort(trainer: "Trainer | None", message: str, code: int) -> int:
    """Report a failure and leave. Once a process group exists, the process exits at once (``os._exit``): a barrier
    or a destructor here would wait for ranks stuck in a collective, and the launcher (torchrun, the deepspeed
    launcher, ``srun --kill-on-bad-exit``) ends those when this one exits non-zero."""
    rank = dist.get_rank() if dist.is_initialized() else launcher_rank()
    print(f"pretrain_nexa: rank {rank}: {message}", file=sys.stderr, flush=True)
    if trainer is not None and hasattr(trainer, "monitor"):
        trainer.monitor.event(trainer.state.step if hasattr(trainer, "state") else 0, "failed",
                              message.strip().splitlines()[-1])
        trainer.monitor.close(exit_code=code)
    if dist.is_initialized():
        sys.stdout.flush()
        os._exit(code)
    return code
