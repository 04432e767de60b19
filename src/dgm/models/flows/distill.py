"""Probability density distillation: train a fast-sampling student flow to match a trained teacher density.

van den Oord et al. (2018), "Parallel WaveNet: Fast High-Fidelity Speech Synthesis", §3. A teacher with a
cheap density and slow sampling (MAF, or any autoregressive model: one pass to score, D to sample) is
distilled into a student with cheap sampling (IAF: one pass to sample *and* to score its own samples,
since the noise is at hand) by minimising

    KL(student ‖ teacher) = E_{x ~ q}[log q(x) − log p_teacher(x)]

on the student's own samples. The expectation is estimated on a batch of reparameterised samples
(``x = T(ε)``), so its gradient flows through the samples into the student; the teacher is frozen. This is
the reverse KL, mode seeking: the student is pushed into the teacher's high-density regions.

:func:`distill` returns the history of the KL estimate, the teacher NLL of the student's samples and the
student's entropy estimate; the teacher's own samples' NLL (its entropy) is the level the second one
approaches. :func:`sampling_speed` times sampling of both models.

Numerics: when teacher and student are flows with the same logit preprocessing (e.g. MAF and IAF with
``logit_alpha`` on dequantised images), the student's samples are handed to the teacher in the shared logit
space, not as pixels. Going through pixels means ``x = σ(y)`` then ``logit(x)`` again in float32, which
loses the tail (``σ(y)`` rounds to 1 for y ≳ 17, where the teacher refuses the point, and is coarse well
before): KL is invariant under a shared bijection, and the logit's log-det, added to both densities, is
computed from y itself. For the same reason :func:`teacher_entropy` scores the teacher's samples from the
pass that drew them (``sample_and_log_prob``) when the teacher has one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from dgm.core.errors import ConfigError
from dgm.core.model import GenerativeModel
from dgm.models.flows.transforms import Logit


@dataclass
class DistillResult:
    """What :func:`distill` measured.

    ``history``: one dict per step with ``step``, ``kl`` (the batch estimate of KL(student ‖ teacher),
    nats), ``teacher_nll`` (−log p_teacher of the student's samples, mean), ``student_nll`` (−log q of the
    same samples: the student's entropy estimate); ``teacher_self_nll``: −log p_teacher of the teacher's own
    samples (its entropy estimate, the floor of ``teacher_nll`` for a perfect student; NaN if not measured).
    """

    history: list[dict[str, float]] = field(default_factory=list)
    teacher_self_nll: float = math.nan

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def _labels(model: GenerativeModel, n: int, generator: torch.Generator) -> Tensor | None:
    k = getattr(model, "num_classes", None)
    return None if k is None else torch.randint(0, k, (n,), generator=generator, device=generator.device)


def teacher_entropy(
    teacher: GenerativeModel,
    num_samples: int = 1000,
    generator: torch.Generator | None = None,
    reduce: str = "mean",
) -> float:
    """``−E_{x ~ teacher}[log p_teacher(x)]``, estimated on ``num_samples`` of the teacher's own samples.

    ``reduce="median"`` gives the median of −log p instead: a density on [0, 1)^D with a logit layer can put
    near-singular spikes at the cube's faces, and a few samples landing there (−log p of −10⁶ nats) swamp
    the mean; the median is the robust level to compare a student with."""
    if reduce not in ("mean", "median"):
        raise ConfigError(f"reduce must be 'mean' or 'median', got {reduce!r}")
    pick = (lambda v: v.mean()) if reduce == "mean" else (lambda v: v.median())
    generator = generator or torch.Generator(teacher.device).manual_seed(0)
    mode = teacher.training
    teacher.eval()  # batch norm layers must use their running statistics, as when scoring data
    try:
        with torch.no_grad():
            context = _labels(teacher, num_samples, generator)
            if hasattr(teacher, "sample_and_log_prob"):  # no round trip through float32 pixels (module doc)
                return pick(-teacher.sample_and_log_prob(num_samples, context, generator)[1]).item()
            x = teacher.sample(num_samples, context=context, generator=generator)
            return pick(-teacher.log_prob(x, context)).item()
    finally:
        teacher.train(mode)


def _shared_logit(teacher: GenerativeModel, student: GenerativeModel) -> bool:
    """Whether both are flows whose first transform is the same :class:`Logit` preprocessing."""
    firsts = []
    for model in (teacher, student):
        transforms = getattr(getattr(model, "transform", None), "transforms", None)
        if transforms is None or len(transforms) < 2 or not isinstance(transforms[0], Logit):
            return False
        firsts.append(transforms[0].alpha)
    return firsts[0] == firsts[1]


def _draw(
    teacher: GenerativeModel,
    student: GenerativeModel,
    n: int,
    context: Tensor | None,
    generator: torch.Generator,
    shared_logit: bool,
) -> tuple[Tensor, Tensor]:
    """``(log q(x), log p_teacher(x))`` of ``n`` reparameterised student samples, both in nats on the
    data scale; through the shared logit space when ``shared_logit`` (see the module docstring)."""
    if not shared_logit:
        x, log_q = student.sample_and_log_prob(n, context=context, generator=generator)
        return log_q, teacher.log_prob(x, context)
    ctx = student._context(context, n)
    z = student.base.sample(n, ctx, generator).to(student._dtype())
    y, log_det = z, z.new_zeros(n)
    for t in reversed(list(student.transform.transforms)[1:]):
        y, ld = t.inverse_and_log_det(y, ctx)
        log_det = log_det + ld
    # log|dx/dy| of the shared logit, from y: x-space densities are y-space ones minus it.
    _, logit_log_det = student.transform.transforms[0].inverse_and_log_det(y)
    log_q = student.base.log_prob(z, ctx) - log_det - logit_log_det
    t_ctx = teacher._context(context, n)
    u, t_log_det = y.to(teacher._dtype()), 0.0
    for t in list(teacher.transform.transforms)[1:]:
        u, ld = t(u, t_ctx)
        t_log_det = t_log_det + ld
    log_p = teacher.base.log_prob(u, t_ctx) + t_log_det - logit_log_det.to(u.dtype)
    return log_q, log_p


def distill(
    teacher: GenerativeModel,
    student: GenerativeModel,
    num_steps: int = 1000,
    batch_size: int = 256,
    lr: float = 1e-3,
    *,
    grad_clip: float | None = 10.0,
    seed: int = 0,
    teacher_samples: int = 1000,
    max_minutes: float | None = None,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> DistillResult:
    """Minimise KL(student ‖ teacher) on the student's own samples with Adam; the teacher is frozen.

    Args:
        teacher: any model with ``log_prob`` differentiable in x (e.g. a trained ``maf``).
        student: a model with a reparameterised ``sample_and_log_prob`` (e.g. ``iaf``), same event shape.
        num_steps, batch_size, lr: Adam steps, samples per step, learning rate.
        grad_clip: clip the student's gradient norm to this (None: no clipping).
        seed: seeds the student's noise (and class labels of conditional models, drawn uniformly).
        teacher_samples: how many teacher samples estimate its own entropy (0: skip; for a MAF teacher
            sampling costs D passes).
        max_minutes: wall budget of the steps (not counting the teacher's entropy); training stops after
            the step that reaches it, or after ``num_steps``, whichever comes first.
        callback: called with each step's record (e.g. to print progress or stop early by raising).

    Returns:
        a :class:`DistillResult` (the student is trained in place and left in evaluation mode).
    """
    if not hasattr(student, "sample_and_log_prob"):
        raise ConfigError(f"the student ({type(student).__name__}) needs sample_and_log_prob, e.g. an iaf")
    if tuple(teacher.event_shape) != tuple(student.event_shape):
        raise ConfigError(f"teacher event shape {teacher.event_shape} != student's {student.event_shape}")
    if getattr(teacher, "num_classes", None) != getattr(student, "num_classes", None):
        raise ConfigError("teacher and student must both be unconditional or have the same num_classes")
    for name, value in (("num_steps", num_steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive int, got {value!r}")
    if not lr > 0:
        raise ConfigError(f"lr must be positive, got {lr}")

    # Generators live on the models' devices (torch draws with a generator of the tensor's device).
    generator = torch.Generator(student.device).manual_seed(seed)
    shared_logit = _shared_logit(teacher, student)
    result = DistillResult()
    teacher_mode = teacher.training
    frozen = [(p, p.requires_grad) for p in teacher.parameters()]
    try:
        teacher.eval()
        if teacher_samples:
            teacher_generator = torch.Generator(teacher.device).manual_seed(seed)
            result.teacher_self_nll = teacher_entropy(teacher, teacher_samples, teacher_generator)
        for p, _ in frozen:
            p.requires_grad_(False)
        student.train()
        optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=lr)
        start = time.perf_counter()
        for step in range(1, num_steps + 1):
            context = _labels(student, batch_size, generator)
            log_q, log_p = _draw(teacher, student, batch_size, context, generator, shared_logit)
            kl = (log_q - log_p.to(log_q.dtype)).mean()
            optimizer.zero_grad(set_to_none=True)
            kl.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(student.parameters(), grad_clip)
            optimizer.step()
            record = {
                "step": step,
                "kl": kl.item(),
                "teacher_nll": -log_p.mean().item(),
                "student_nll": -log_q.mean().item(),
            }
            result.history.append(record)
            if callback is not None:
                callback(record)
            if max_minutes is not None and time.perf_counter() - start >= 60 * max_minutes:
                break
    finally:
        for p, requires_grad in frozen:
            p.requires_grad_(requires_grad)
        teacher.train(teacher_mode)
        student.eval()  # trained: left in evaluation mode, ready to sample
    return result


def student_scores(
    teacher: GenerativeModel, student: GenerativeModel, num_samples: int = 1000, seed: int = 1
) -> dict[str, float]:
    """Fresh estimates on ``num_samples`` student samples (no gradients): ``kl``, ``teacher_nll``,
    ``student_nll`` (means, nats), their standard errors ``*_se`` and medians ``*_median``."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise ConfigError(f"num_samples must be an int >= 2, got {num_samples!r}")
    generator = torch.Generator(student.device).manual_seed(seed)
    shared_logit = _shared_logit(teacher, student)
    modes = teacher.training, student.training
    teacher.eval(), student.eval()
    try:
        with torch.no_grad():
            context = _labels(student, num_samples, generator)
            log_q, log_p = _draw(teacher, student, num_samples, context, generator, shared_logit)
    finally:
        teacher.train(modes[0]), student.train(modes[1])
    log_p = log_p.to(log_q.dtype)
    out = {}
    for key, values in (("kl", log_q - log_p), ("teacher_nll", -log_p), ("student_nll", -log_q)):
        out[key] = values.mean().item()
        out[f"{key}_se"] = values.std().item() / math.sqrt(num_samples)
        out[f"{key}_median"] = values.median().item()
    return out


def sampling_speed(
    student: GenerativeModel, teacher: GenerativeModel, num_samples: int = 100, repeats: int = 3
) -> dict[str, float]:
    """Seconds to draw ``num_samples`` samples from each model (best of ``repeats``, after one warm-up) and
    the ratio ``teacher_s / student_s`` (the sampling speed-up of distillation)."""

    def best(model: GenerativeModel) -> float:
        context = _labels(model, num_samples, torch.Generator(model.device).manual_seed(0))
        cuda = model.device.type == "cuda"
        times = []
        with torch.no_grad():
            for i in range(repeats + 1):
                start = time.perf_counter()
                model.sample(num_samples, context=context)
                if cuda:
                    torch.cuda.synchronize(model.device)
                if i:  # the first run warms up caches and lazy initialisation
                    times.append(time.perf_counter() - start)
        return min(times)

    if repeats < 1 or num_samples < 1:
        raise ConfigError(f"need num_samples >= 1 and repeats >= 1, got {num_samples}, {repeats}")
    student_s, teacher_s = best(student), best(teacher)
    return {"student_s": student_s, "teacher_s": teacher_s, "speedup": teacher_s / max(student_s, 1e-12)}
