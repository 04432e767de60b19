"""The one training loop (DESIGN.md §6).

Adam (or SGD, Adagrad) on the model's ``loss`` (or the model's own closed-form / EM ``fit`` where it
has one), batches, gradient-norm clipping, early stopping on validation NLL, best-weights keeping, a
progress bar, a metrics CSV (and TensorBoard when installed), periodic atomic checkpoints and exact
resumption.

Resumption is exact: a checkpoint stores the model, the optimizer, the global torch RNG, the data
generator (dynamic binarisation) and the shuffling generator's state *at the start of the epoch*
with the position inside it, so a resumed run replays the same permutation from the same batch and
reaches the same parameters as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from dgm.core import checkpoint as ckpt
from dgm.core.errors import CheckpointError, ConfigError, DgmError
from dgm.core.support import check_input, values_checked
from dgm.evaluation.metrics import _as_dataset, evaluate
from dgm.training import optim, precision
from dgm.training.precision import PRECISIONS


class TrainingError(DgmError):
    """Training cannot go on (e.g. the loss became NaN)."""


class TrainingInterrupted(DgmError):
    """Training was stopped by the user; the checkpoint written on the way out allows ``resume``."""


@dataclass
class TrainOptions:
    """Options of :func:`train`; all plain data, stored in ``run.json``."""

    epochs: int = 50
    batch_size: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.0
    # "adam" | "sgd" | "adagrad" | "rmsprop": the papers' own optimizers, to reproduce them (NADE and
    # FVSBN were trained with SGD, MADE with Adagrad, NICE with RMSProp and momentum).
    optimizer: str = "adam"
    momentum: float = 0.0  # SGD's or RMSProp's (heavy-ball) momentum
    # RMSProp: decay of the running mean of squared gradients, and ε added to its root (a floor below
    # which small gradients take plain SGD steps of lr/ε; NICE's code used a floor of 1e-2).
    rms_decay: float = 0.99
    eps: float = 1e-8
    grad_clip: float | None = 100.0  # max gradient norm; None disables clipping
    patience: int | None = 10  # epochs without validation improvement before stopping; None: never
    seed: int = 0
    method: str = "auto"  # "auto": the model's closed-form/EM `fit` if it has one, else "gradient"
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    eval_batch_size: int = 1000
    eval_num_samples: int | None = None  # importance samples of each validation log_prob (estimated models)
    # Seconds between checkpoints (one is always written at the end). None: 20× the last write's duration,
    # at least 30 s, so that writing takes at most 5 % of the run and a killed run loses little.
    checkpoint_every: float | None = None
    max_steps: int | None = None  # stop after this many optimizer steps in total
    max_minutes: float | None = None  # stop after this much training time (validation included)
    lr_schedule: str = "constant"  # one of SCHEDULES, see :func:`learning_rate`
    lr_min: float = 0.0  # the cosine schedule's final learning rate; the exponential schedule's floor
    lr_gamma: float = 1.0  # the exponential schedule's factor per epoch; the step schedule's per milestone
    lr_milestones: tuple[int, ...] = ()  # the step schedule's epochs at which lr is multiplied by lr_gamma
    warmup_steps: int = 0  # linear warm-up from 0 over this many steps, before any schedule
    # Polyak averaging (an exponential moving average of the weights, decay per step; e.g. 0.999):
    # validation, the kept best weights and the returned model use the average, training the raw weights.
    ema_decay: float | None = None
    tensorboard: bool | None = None  # None: log to TensorBoard if it is installed
    # "fp32" | "bf16": "bf16" runs the training loss under bfloat16 autocast (matrix products in bf16
    # with fp32 accumulation; weights, optimizer state, reductions and the loss itself stay fp32, see
    # dgm.training.precision), about twice the matmul rate on CPUs with AVX512-BF16 and on GPUs.
    # Validation and evaluation stay fp32, so reported likelihoods are exact for the trained weights.
    precision: str = "fp32"

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr!r}")
        if not self.weight_decay >= 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        for name in ("max_steps", "patience", "eval_num_samples"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive int or None, got {value!r}")
        if not isinstance(self.eval_batch_size, int) or self.eval_batch_size < 1:
            raise ConfigError(f"eval_batch_size must be a positive int, got {self.eval_batch_size!r}")
        if self.checkpoint_every is not None and not self.checkpoint_every > 0:
            raise ConfigError(
                f"checkpoint_every must be a positive number of seconds, got {self.checkpoint_every!r}"
            )
        if self.optimizer not in optim.NAMES:
            raise ConfigError(f"optimizer must be one of {', '.join(optim.NAMES)}, got {self.optimizer!r}")
        if not 0 <= self.momentum < 1 or (self.momentum and self.optimizer not in ("sgd", "rmsprop")):
            raise ConfigError(
                f"momentum must lie in [0, 1) and needs optimizer 'sgd' or 'rmsprop', got {self.momentum!r}"
            )
        if not 0 <= self.rms_decay < 1:
            raise ConfigError(f"rms_decay must lie in [0, 1), got {self.rms_decay!r}")
        if not self.eps > 0:
            raise ConfigError(f"eps must be positive, got {self.eps!r}")
        if self.method not in ("auto", "gradient", "fit"):
            raise ConfigError(f"method must be 'auto', 'gradient' or 'fit', got {self.method!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be positive or None, got {self.grad_clip!r}")
        if self.lr_schedule not in SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {', '.join(SCHEDULES)}, got {self.lr_schedule!r}")
        if not 0 <= self.lr_min <= self.lr:
            raise ConfigError(f"lr_min must lie in [0, lr], got {self.lr_min!r}")
        if not 0 < self.lr_gamma <= 1:
            raise ConfigError(f"lr_gamma must lie in (0, 1], got {self.lr_gamma!r}")
        if isinstance(self.lr_milestones, int):
            self.lr_milestones = (self.lr_milestones,)
        if not isinstance(self.lr_milestones, (list, tuple)):
            raise ConfigError(f"lr_milestones must be a sequence of epochs, got {self.lr_milestones!r}")
        self.lr_milestones = tuple(self.lr_milestones)  # a list when read back from JSON
        if any(not isinstance(m, int) or m < 1 for m in self.lr_milestones) or list(
            self.lr_milestones
        ) != sorted(set(self.lr_milestones)):
            raise ConfigError(f"lr_milestones must be increasing positive epochs, got {self.lr_milestones!r}")
        if self.lr_schedule == "step" and not self.lr_milestones:
            raise ConfigError("lr_schedule 'step' needs lr_milestones (the epochs after which lr is cut)")
        if self.lr_schedule != "step" and self.lr_milestones:
            raise ConfigError(
                f"lr_milestones {list(self.lr_milestones)} are only used by lr_schedule 'step', "
                f"got {self.lr_schedule!r}"
            )
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(f"ema_decay must lie in (0, 1) or be None, got {self.ema_decay!r}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"max_minutes must be positive or None, got {self.max_minutes!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


SCHEDULES = ("constant", "cosine", "exponential", "step")


def make_optimizer(opts: TrainOptions, parameters) -> torch.optim.Optimizer:
    """The optimizer named by ``opts.optimizer``; ``weight_decay`` is an L2 penalty added to the gradient.

    Fused updates where torch has them (CPU, CUDA), else multi-tensor ones (see :mod:`dgm.training.optim`):
    torch's default on CPU is a per-parameter loop, which cost 20 % of a small flow's training step (MAF
    on two moons: 0.96 → 0.78 s per epoch with ``foreach``)."""
    return optim.make(
        opts.optimizer,
        parameters,
        opts.lr,
        weight_decay=opts.weight_decay,
        momentum=opts.momentum,
        rms_decay=opts.rms_decay,
        eps=opts.eps,
    )


def learning_rate(opts: TrainOptions, step: int, steps_per_epoch: int) -> float:
    """The learning rate for optimizer step ``step`` (0-based): a pure function of the step.

    Being stateless, the schedule needs nothing in the checkpoint beyond the step counter, so a resumed
    run follows it exactly. ``cosine`` anneals from ``lr`` to ``lr_min`` over the whole run (``max_steps``
    where given, else ``epochs`` epochs; Loshchilov & Hutter 2017, without restarts); ``exponential``
    multiplies by ``lr_gamma`` after every epoch (as NADE and MADE were trained), never below ``lr_min``;
    ``step`` multiplies by ``lr_gamma`` once each of ``lr_milestones`` epochs is done (as torch's
    MultiStepLR), never below ``lr_min``: a run trained at one rate until its validation curve flattens,
    then at a tenth of it.
    """
    lr = opts.lr
    if opts.lr_schedule == "cosine":
        total = opts.max_steps or opts.epochs * steps_per_epoch
        t = min(step / max(total, 1), 1.0)
        lr = opts.lr_min + (opts.lr - opts.lr_min) * 0.5 * (1 + math.cos(math.pi * t))
    elif opts.lr_schedule == "exponential":
        lr = max(opts.lr * opts.lr_gamma ** (step // steps_per_epoch), opts.lr_min)
    elif opts.lr_schedule == "step":
        passed = sum(step // steps_per_epoch >= m for m in opts.lr_milestones)
        lr = max(opts.lr * opts.lr_gamma**passed, opts.lr_min)
    if step < opts.warmup_steps:
        lr *= (step + 1) / opts.warmup_steps
    return lr


@dataclass
class TrainState:
    """Counters saved in every checkpoint."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches completed inside the current epoch
    step: int = 0  # optimizer steps (or fit iterations) in total
    best_valid_nll: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    stopped_early: bool = False
    finished: bool = False
    elapsed_s: float = 0.0
    epoch_sums: dict[str, float] = field(default_factory=dict)  # running sums of this epoch's batch metrics
    epoch_count: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TrainResult:
    history: list[dict[str, Any]]
    best_valid_nll: float
    best_epoch: int
    stopped_early: bool
    steps: int
    elapsed_s: float
    run_dir: Path | None
    method: str = "gradient"  # "gradient" (optimizer steps) or "fit" (closed-form / EM iterations)
    resumed_changes: dict = field(default_factory=dict)  # option: [stored, used] where a resume changed it
    already_finished: bool = False  # a resumed run that had nothing left to train


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is available; use --device cpu")
    return dev


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Holds the state of one training run; :func:`train` is the usual entry point."""

    def __init__(
        self,
        model,
        train_data,
        valid_data=None,
        *,
        out=None,
        resume=False,
        progress=True,
        callbacks: Iterable[Callable[[Trainer], None]] = (),
        run_info: dict | None = None,
        **options,
    ):
        known = {f.name for f in fields(TrainOptions)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(
                f"unknown training option {', '.join(unknown)}; options are: {', '.join(sorted(known))}"
            )
        self.options = TrainOptions(**options)
        self.model = model
        self.train_data = _as_dataset(train_data)
        self.valid_data = None if valid_data is None else _as_dataset(valid_data)
        self.out = None if out is None else Path(out)
        self.resume = resume
        self.progress = progress
        self.callbacks = list(callbacks)
        self.run_info = run_info or {}
        self.device = resolve_device(self.options.device)
        self.state = TrainState()
        self._stop_requested = False
        self.resumed_changes: dict = {}
        self._last_checkpoint = time.monotonic()
        self._started: float | None = None
        self._last_write_s = 0.0  # how long the last checkpoint took to write (the automatic interval)
        self._tb = None
        if resume and self.out is None:
            raise ConfigError("resume=True needs the run directory (out=...)")
        if len(self.train_data) == 0:
            raise ConfigError("training data is empty")
        if model.conditional and self.train_data.y is None:
            raise ConfigError(f"model {model.name!r} is conditional but {self.train_data.name} has no labels")
        self.method = self.options.method
        if self.method == "auto":
            self.method = "fit" if callable(getattr(model, "fit", None)) else "gradient"
        if self.method == "fit" and not callable(getattr(model, "fit", None)):
            raise ConfigError(f"model {model.name!r} has no closed-form/EM fit; use method 'gradient'")
        # Options that would otherwise be ignored without a word:
        if self.method == "fit" and self.options.ema_decay is not None:
            raise ConfigError(
                "ema_decay averages gradient steps; a closed-form/EM fit has none (method 'gradient')"
            )
        if model.exact and self.options.eval_num_samples is not None:
            raise ConfigError(
                f"{model.name} has an exact log_prob; eval_num_samples applies to latent-variable models"
            )

    # ----------------------------------------------------------------- control
    @property
    def elapsed_s(self) -> float:
        """Seconds of training (validation included) so far, over every invocation of a resumed run: what
        ``max_minutes`` is measured against (a callback can hold a budget of its own with it)."""
        return self.state.elapsed_s if self._started is None else time.monotonic() - self._started

    def request_stop(self) -> None:
        """Stop at the next step boundary, writing a checkpoint (what Ctrl-C does)."""
        self._stop_requested = True

    def run(self) -> TrainResult:
        opts = self.options
        self.model.to(self.device)
        self.shuffle_gen = torch.Generator().manual_seed(opts.seed)
        self.data_gen = torch.Generator().manual_seed(opts.seed + 1)
        # The trained tensors and their names (the EMA's keys in a checkpoint), listed once: walking the
        # module tree on every step (for the gradient norm) cost 5-10 % of a small flow's step.
        trained = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self._ema_names = [n for n, _ in trained]
        self._params = [p for _, p in trained]
        self.optimizer = (
            make_optimizer(opts, self.model.parameters())
            if self._params and self.method == "gradient"
            else None
        )
        self._epoch_start_shuffle = self.shuffle_gen.get_state()
        # The average starts at the initial weights; a resumed run replaces it with the saved one.
        self.ema = (
            [p.detach().clone() for p in self._params]
            if opts.ema_decay is not None and self.optimizer is not None
            else None
        )
        if self.out is not None:
            self._prepare_run_dir()
        already_finished = self.state.finished
        start = self._started = time.monotonic() - self.state.elapsed_s
        previous_handler = self._install_sigint()
        # Subnormal floats flush to zero while training: an optimizer's running averages decay into the
        # subnormal range wherever gradients are (near) zero — RMSProp's squared-gradient average (decay
        # 0.95) within ~1,700 steps: 85 % of NICE's entries after 7 epochs — and subnormal arithmetic on
        # x86 made every NICE epoch 2× slower (107 s against 54 s). torch's default (off) is restored
        # afterwards.
        torch.set_flush_denormal(True)
        try:
            if not self.state.finished:
                (self._fit_loop if self.method == "fit" else self._gradient_loop)(start)
                self.state.finished = True
                self.state.elapsed_s = time.monotonic() - start
                if self.out is not None:
                    self._save_checkpoint()
        finally:
            if not self.state.finished:  # interrupted or failed: the time spent still counts
                self.state.elapsed_s = time.monotonic() - start
            self._started = None
            torch.set_flush_denormal(False)
            self._restore_sigint(previous_handler)
            if self._tb is not None:
                self._tb.close()
        self._load_best()
        return TrainResult(
            self.state.history,
            self.state.best_valid_nll,
            self.state.best_epoch,
            self.state.stopped_early,
            self.state.step,
            self.state.elapsed_s,
            self.out,
            self.method,
            resumed_changes=self.resumed_changes,
            already_finished=already_finished,
        )

    # ----------------------------------------------------------------- loops
    def _gradient_loop(self, start: float) -> None:
        opts, st, data = self.options, self.state, self.train_data
        n = len(data)
        num_batches = self._steps_per_epoch = math.ceil(n / opts.batch_size)
        for epoch in range(st.epoch, opts.epochs):
            # The permutation is replayed from the generator state saved at the epoch's start.
            if st.batch == 0:
                self._epoch_start_shuffle = self.shuffle_gen.get_state()
            else:
                self.shuffle_gen.set_state(self._epoch_start_shuffle)
            perm = torch.randperm(n, generator=self.shuffle_gen)
            self.model.train()
            bar = tqdm(
                total=num_batches,
                initial=st.batch,
                desc=f"epoch {epoch + 1}/{opts.epochs}",
                disable=None if self.progress else True,  # None: bar only on a terminal
                leave=False,
                dynamic_ncols=True,
            )
            t_epoch = time.monotonic()
            for b in range(st.batch, num_batches):
                idx = perm[b * opts.batch_size : (b + 1) * opts.batch_size]
                x, y = data.get_batch(idx, self.data_gen)
                metrics = self._step(x, y)
                st.batch, st.step = b + 1, st.step + 1
                st.epoch_count += len(idx)
                for k, v in metrics.items():
                    st.epoch_sums[k] = st.epoch_sums.get(k, 0.0) + v * len(idx)
                bar.update(1)
                if b % 10 == 0 or b == num_batches - 1:
                    bar.set_postfix(loss=f"{st.epoch_sums['train_loss'] / st.epoch_count:.3f}")
                for cb in self.callbacks:
                    cb(self)
                if self._stop_requested:
                    bar.close()
                    self._interrupt(start)
                if opts.max_steps is not None and st.step >= opts.max_steps:
                    break
                if self._out_of_time(start):
                    break
                if self.out is not None and self._checkpoint_due():
                    st.elapsed_s = time.monotonic() - start
                    self._save_checkpoint()
            bar.close()
            row = {"epoch": epoch + 1, "step": st.step}
            row.update({k: v / max(st.epoch_count, 1) for k, v in st.epoch_sums.items()})
            # Dequantised data: the loss is on the [0, 1) scale, validation (through evaluate) on the integer
            # scale of the papers; shift the logged train loss by the same D·log(levels) so the two compare.
            row["train_loss"] = row.get("train_loss", math.nan) + getattr(data, "dequantization_log_det", 0.0)
            row["lr"] = self.optimizer.param_groups[0]["lr"] if self.optimizer else float("nan")
            row["epoch_time_s"] = time.monotonic() - t_epoch
            if self._end_epoch(row, start):
                return
            if opts.max_steps is not None and st.step >= opts.max_steps:
                return
            if self._out_of_time(start):
                return

    def _out_of_time(self, start: float) -> bool:
        limit = self.options.max_minutes
        return limit is not None and time.monotonic() - start >= 60 * limit

    def _to_device(self, t: Tensor) -> Tensor:
        # From pageable memory a host-to-GPU copy waits for everything queued on the GPU before it starts;
        # from pinned memory it joins the queue (the host allocator keeps the buffer until the copy ends).
        if self.device.type == "cuda" and t.device.type == "cpu":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def _step(self, x, y) -> dict[str, float]:
        # The batch's values are checked here, on the CPU, before it moves; inside the step the model checks
        # shapes only, and torch.distributions nothing (values_checked): on a GPU each check is a read back.
        x = self._to_device(check_input(x, self.model.event_shape, self.model.support, "training batch"))
        context = self._to_device(y) if (self.model.conditional and y is not None) else None
        # (NaN/inf parameters give a non-finite loss, caught below: torch.distributions' own argument
        # check, which raised ValueError here before, is off inside values_checked.)
        with self._autocast(), values_checked():
            loss, extra = self.model.loss_and_metrics(x, context)
        loss = loss.float()
        lr = learning_rate(self.options, self.state.step, self._steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.options.grad_clip if self.options.grad_clip is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self._params, clip)
        # The step's figures are read back from the device once, after the backward pass is queued and
        # before the update: each read (`.item()`, `float()`, `if tensor`) makes the host wait for the GPU,
        # and while it waits it queues nothing. A non-finite loss still stops the run before the update.
        names = [k for k, v in extra.items() if isinstance(v, Tensor)]  # (floats are on the host already)
        values = torch.stack(
            [
                loss.detach(),
                grad_norm.to(loss.device).float(),
                *(extra[k].detach().to(loss.device).float() for k in names),
            ]
        ).tolist()
        read = dict(zip(names, values[2:], strict=True))
        if not math.isfinite(values[0]):
            raise TrainingError(
                f"loss became {values[0]} at step {self.state.step + 1}; lower --lr or set --grad-clip"
            )
        self.optimizer.step()
        if self.ema is not None:
            # Warm-started decay (as TensorFlow's ExponentialMovingAverage with num_updates): early on
            # the average forgets its random initial weights quickly.
            t = self.state.step
            decay = min(self.options.ema_decay, (1 + t) / (10 + t))
            with torch.no_grad():
                torch._foreach_lerp_(self.ema, self._params, 1 - decay)
        return {
            "train_loss": values[0],
            "grad_norm": values[1],
            **{k: read[k] if k in read else float(v) for k, v in extra.items()},
        }

    def _autocast(self):
        """The training loss's precision (``options.precision``, :mod:`dgm.training.precision`)."""
        return precision.autocast(self.device.type, self.options.precision)

    @contextlib.contextmanager
    def _averaged_weights(self):
        """Inside: the model holds the Polyak-averaged weights (when ``ema_decay`` is set); after: the raw
        weights again, so training continues from where it was."""
        if self.ema is None:
            yield
            return
        params = self._params
        raw = [p.detach().clone() for p in params]
        with torch.no_grad():
            torch._foreach_copy_(params, self.ema)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(params, raw)

    def _fit_loop(self, start: float) -> None:
        """Closed-form or EM fitting: each iteration the model yields counts as an epoch."""
        st = self.state
        iterations = self.model.fit(self.train_data, initialize=st.step == 0, generator=self.data_gen)
        t = time.monotonic()
        for row in iterations:
            # The iteration's work happens inside the generator, between two yields (validation excluded).
            st.step += 1
            row = {"epoch": st.epoch + 1, "step": st.step, **row, "epoch_time_s": time.monotonic() - t}
            if self._end_epoch(row, start) or st.epoch >= self.options.epochs or self._out_of_time(start):
                return
            if self._stop_requested:
                self._interrupt(start)
            t = time.monotonic()

    def _end_epoch(self, row: dict, start: float) -> bool:
        """Validate, log, keep the best weights, checkpoint; True when early stopping fires."""
        st, opts = self.state, self.options
        with self._averaged_weights():
            if self.valid_data is not None:
                # A latent-variable model's validation NLL is an importance-sampled estimate; its K trades
                # the estimate's bias against the cost of validating every epoch.
                kw = (
                    {"num_samples": opts.eval_num_samples}
                    if opts.eval_num_samples and not self.model.exact
                    else {}
                )
                res = evaluate(self.model, self.valid_data, opts.eval_batch_size, **kw)
                row["valid_nll"], row["valid_bpd"] = res["nll"], res["bits_per_dim"]
                improved = res["nll"] < st.best_valid_nll
            else:
                improved = True  # without validation data the latest weights are the ones kept
            st.elapsed_s = time.monotonic() - start
            row["elapsed_s"] = st.elapsed_s
            st.history.append(row)
            st.epoch, st.batch, st.epoch_sums, st.epoch_count = st.epoch + 1, 0, {}, 0
            if improved:
                st.best_valid_nll = row.get("valid_nll", math.nan)
                st.best_epoch = st.epoch
                st.bad_epochs = 0
                self._best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                self._best_unsaved = True  # written with the next checkpoint
            else:
                st.bad_epochs += 1
        if opts.patience is not None and st.bad_epochs >= opts.patience:
            st.stopped_early = True
        self._log(row)
        if self.progress:
            tqdm.write(_epoch_line(row, opts.epochs))
        if self.out is not None:
            # The training state (weights, optimizer moments, best weights) at most every checkpoint
            # interval (_checkpoint_interval), and always when training ends or is interrupted. The metrics,
            # which `dgm report` and the curves read, go out after every epoch.
            if self._checkpoint_due():
                self._save_checkpoint()
            else:
                ckpt.atomic_write(self.out / ckpt.METRICS, _csv(self.state.history))
        return st.stopped_early

    def _interrupt(self, start: float):
        self.state.elapsed_s = time.monotonic() - start
        where = f"epoch {self.state.epoch + 1}, step {self.state.step}"
        if self.out is None:
            raise TrainingInterrupted(f"training interrupted at {where}")
        self._save_checkpoint()
        raise TrainingInterrupted(
            f"training interrupted at {where}; checkpoint saved, continue with --resume"
        )

    def _load_best(self) -> None:
        best = getattr(self, "_best_state", None)
        if best is None and self.out is not None and (self.out / ckpt.WEIGHTS).exists():
            tensors, _ = ckpt.load_tensors(self.out / ckpt.WEIGHTS)
            best = tensors
        if best is not None:
            self.model.load_state_dict(best)
        self.model.eval()

    # ----------------------------------------------------------------- files
    def _prepare_run_dir(self) -> None:
        out = self.out
        state_file = out / ckpt.TRAINING_STATE
        if self.resume:
            if not state_file.exists():
                raise CheckpointError(f"cannot resume: {state_file} does not exist")
            self._restore_checkpoint(state_file)
            self._record_resume()
            return
        if state_file.exists() or (out / ckpt.WEIGHTS).exists():
            raise CheckpointError(
                f"{out} already holds a run; use --resume to continue it or choose another --out"
            )
        out.mkdir(parents=True, exist_ok=True)
        ckpt.write_json(out / ckpt.CONFIG, self.model.config)
        ckpt.write_json(out / ckpt.RUN, self._run_info())

    def _run_info(self) -> dict:
        return {
            "dgm_version": _version(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "data": self.run_info.get("data", self.train_data.describe()),
            "training": asdict(self.options),
            "method": self.method,
            **{k: v for k, v in self.run_info.items() if k != "data"},
        }

    def _record_resume(self) -> None:
        """Keep run.json true to what trains: options that differ from the stored ones (a new lr, more
        epochs) are recorded with the epoch they took effect, and a missing or unreadable run.json is
        written afresh from this invocation."""
        path = self.out / ckpt.RUN
        current = json.loads(json.dumps(asdict(self.options), default=list))
        try:
            info = ckpt.read_json(path)
            stored = info["training"]
        except (CheckpointError, KeyError, TypeError):
            ckpt.write_json(path, {**self._run_info(), "rewritten_on_resume_at_epoch": self.state.epoch})
            return
        changed = {k: [stored.get(k), v] for k, v in current.items() if stored.get(k) != v}
        self.resumed_changes = changed
        if not changed:
            return
        info["training"] = current
        info.setdefault("resumes", []).append(
            {"at_epoch": self.state.epoch, "at_step": self.state.step, "changed": changed}
        )
        ckpt.write_json(path, info)

    def _checkpoint_due(self) -> bool:
        return time.monotonic() - self._last_checkpoint >= self._checkpoint_interval()

    def _checkpoint_interval(self) -> float:
        if self.options.checkpoint_every is not None:
            return self.options.checkpoint_every
        # Writing after every 4-second epoch took 8 of every 12 s for a 77M-parameter MADE on a GPU; a
        # fixed 5 minutes lost up to 5 minutes of a small model's run to a kill -9.
        return max(AUTO_CHECKPOINT_MIN_S, AUTO_CHECKPOINT_FACTOR * self._last_write_s)

    def _save_checkpoint(self) -> None:
        t0 = time.monotonic()
        best = getattr(self, "_best_state", None)
        if getattr(self, "_best_unsaved", False) and best is not None:
            ckpt.save_model(self.model, self.out, state_dict=best)  # the best weights so far
            self._best_unsaved = False
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        optim_meta = None
        if self.optimizer is not None:
            sd = self.optimizer.state_dict()
            optim_meta = {"param_groups": sd["param_groups"], "scalars": {}}
            for pid, pstate in sd["state"].items():
                for k, v in pstate.items():
                    if torch.is_tensor(v):
                        tensors[f"optim.{pid}.{k}"] = v
                    else:
                        optim_meta["scalars"][f"{pid}.{k}"] = v
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.data"] = self.data_gen.get_state()
        tensors["rng.shuffle_epoch_start"] = self._epoch_start_shuffle
        tensors["rng.shuffle"] = self.shuffle_gen.get_state()
        if torch.cuda.is_available() and self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        if best is not None:
            tensors.update({f"best.{k}": v for k, v in best.items()})
        if self.ema is not None:
            tensors.update({f"ema.{n}": v for n, v in zip(self._ema_names, self.ema, strict=True)})
        meta = {
            "state": asdict(self.state),
            "optimizer": optim_meta,
            "optimizer_name": self.options.optimizer,
            "method": self.method,
        }
        ckpt.save_tensors(self.out / ckpt.TRAINING_STATE, tensors, meta)
        ckpt.atomic_write(self.out / ckpt.METRICS, _csv(self.state.history))
        self._last_checkpoint = time.monotonic()
        self._last_write_s = self._last_checkpoint - t0

    def _restore_checkpoint(self, path: Path) -> None:
        tensors, meta = ckpt.load_tensors(path)
        config = ckpt.read_config(self.out / ckpt.CONFIG)
        current = self.model.config
        if config != current:
            # Name the options that differ: after a default changes, the fix is to pass the run's value.
            keys = sorted(k for k in config.keys() | current.keys() if config.get(k) != current.get(k))
            diff = ", ".join(f"{k}: {config.get(k)!r} in the run, {current.get(k)!r} now" for k in keys[:4])
            raise CheckpointError(
                f"cannot resume {self.out}: its config.json describes a different model ({diff})"
            )
        ckpt.load_state_into(
            self.model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path
        )
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        if best:
            self._best_state = best
        if self.ema is not None:
            # A run started without averaging starts its average here, at the resumed weights.
            with torch.no_grad():
                for n, e, p in zip(self._ema_names, self.ema, self._params, strict=True):
                    e.copy_(tensors.get(f"ema.{n}", p.detach()))
        if meta.get("method", self.method) != self.method:
            raise CheckpointError(f"cannot resume {self.out}: it was trained with method {meta['method']!r}")
        trained_with = meta.get("optimizer_name", "adam")  # checkpoints before the option: Adam
        if self.optimizer is not None and trained_with != self.options.optimizer:
            raise CheckpointError(
                f"cannot resume {self.out}: it was trained with optimizer {trained_with!r}, "
                f"not {self.options.optimizer!r}"
            )
        self.state = TrainState(**meta["state"])
        # A finished run resumed with a larger budget (more epochs or steps) goes on training.
        st, opts = self.state, self.options
        st.finished = (
            st.stopped_early
            or st.epoch >= opts.epochs
            or (opts.max_steps is not None and st.step >= opts.max_steps)
        )
        if self.optimizer is not None and meta.get("optimizer"):
            om = meta["optimizer"]
            state: dict[int, dict] = {}
            for k, v in tensors.items():
                if k.startswith("optim."):
                    pid, name = k[6:].split(".", 1)
                    state.setdefault(int(pid), {})[name] = v
            for k, v in om["scalars"].items():
                pid, name = k.split(".", 1)
                state.setdefault(int(pid), {})[name] = v
            groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in om["param_groups"]]
            self.optimizer.load_state_dict({"state": state, "param_groups": groups})
        torch.set_rng_state(tensors["rng.torch"])
        self.data_gen.set_state(tensors["rng.data"])
        self.shuffle_gen.set_state(tensors["rng.shuffle"])
        self._epoch_start_shuffle = tensors["rng.shuffle_epoch_start"]
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)

    def _log(self, row: dict) -> None:
        if self.out is None or self.options.tensorboard is False:
            return
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                if self.options.tensorboard:
                    raise ConfigError(
                        "tensorboard=True but the tensorboard package is not installed"
                    ) from None
                self.options.tensorboard = False
                return
            self._tb = SummaryWriter(str(self.out / "tensorboard"))
        for k, v in row.items():
            if isinstance(v, int | float) and k not in ("epoch", "step"):
                self._tb.add_scalar(k, v, row["epoch"])

    # ----------------------------------------------------------------- Ctrl-C
    def _install_sigint(self):
        """Ctrl-C, and SIGTERM (what batch schedulers send before killing a job), stop at the next step
        with a checkpoint; a second one stops at once."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True

        return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def _restore_sigint(previous) -> None:
        for sig, handler in (previous or {}).items():
            signal.signal(sig, handler)


AUTO_CHECKPOINT_MIN_S = 30.0
AUTO_CHECKPOINT_FACTOR = 20.0


def _epoch_line(row: dict, epochs: int) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}"]
    if "train_loss" in row:
        parts.append(f"train {row['train_loss']:.4f}")
    if "valid_nll" in row:
        # A discriminative model's NLL is of labels, -log p(y | x): no bits per input dimension.
        bpd = row.get("valid_bpd")
        parts.append(
            f"valid {row['valid_nll']:.4f} nats" + (f" ({bpd:.4f} bits/dim)" if bpd is not None else "")
        )
    skip = {
        "epoch",
        "step",
        "train_loss",
        "valid_nll",
        "valid_bpd",
        "lr",
        "grad_norm",
        "epoch_time_s",
        "elapsed_s",
    }
    parts += [f"{k} {v:.4g}" for k, v in row.items() if k not in skip and isinstance(v, int | float)]
    parts.append(f"{row['epoch_time_s']:.2f} s")
    return "  ".join(parts)


def _csv(history: list[dict]) -> str:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def _version() -> str:
    from dgm import __version__

    return __version__


def train(
    model,
    train_data,
    valid_data=None,
    *,
    out=None,
    resume: bool = False,
    progress: bool = True,
    callbacks: Iterable[Callable[[Trainer], None]] = (),
    **options,
) -> TrainResult:
    """Train ``model`` on ``train_data`` (a :class:`dgm.data.Dataset`, a tensor or an ``(x, y)`` pair).

    Options are those of :class:`TrainOptions` (``epochs``, ``batch_size``, ``lr``, ``grad_clip``,
    ``patience``, ``seed``, ``method``, ``device``, …). With ``out`` a run directory is written
    (config, best weights, training state, metrics.csv, run.json); ``resume=True`` continues it.
    On return the model holds the weights with the best validation NLL.

    >>> m = dgm.build("independent", event_shape=(64,))
    >>> dgm.train(m, dgm.data.load("digits-binary", "train"), dgm.data.load("digits-binary", "valid"))
    """
    return Trainer(
        model,
        train_data,
        valid_data,
        out=out,
        resume=resume,
        progress=progress,
        callbacks=callbacks,
        **options,
    ).run()
