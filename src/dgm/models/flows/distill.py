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
    teacher: GenerativeModel, num_samples: int = 1000, generator: torch.Generator | None = None
) -> float:
    """``−E_{x ~ teacher}[log p_teacher(x)]``, estimated on ``num_samples`` of the teacher's own samples."""
    generator = generator or torch.Generator(teacher.device).manual_seed(0)
    with torch.no_grad():
        context = _labels(teacher, num_samples, generator)
        x = teacher.sample(num_samples, context=context, generator=generator)
        return -teacher.log_prob(x, context).mean().item()


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
        for step in range(1, num_steps + 1):
            context = _labels(student, batch_size, generator)
            x, log_q = student.sample_and_log_prob(batch_size, context=context, generator=generator)
            log_p = teacher.log_prob(x, context)
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
    finally:
        for p, requires_grad in frozen:
            p.requires_grad_(requires_grad)
        teacher.train(teacher_mode)
        student.eval()  # trained: left in evaluation mode, ready to sample
    return result


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
