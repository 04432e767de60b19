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

Reverse KL alone can collapse: from a multimodal teacher (unconditional MNIST) the student settles on its
densest mode, and on MNIST a student of only "1"s has a lower KL than a diverse one of the same family
(``benchmarks/distill.py`` measures both). Parallel WaveNet meets its own failure modes with auxiliary
losses next to the KL (§3.2). The one here uses that both models are maps of the same noise: the teacher's
samples with the noise that drew them, :func:`teacher_pairs`, give a regression target for the student's
map ε ↦ x (the paired-noise distillation of Luhman & Luhman 2021, "Knowledge distillation in iterative
generative models for improved sampling speed"); :func:`imitate` fits it alone (a warm start), and
``distill(..., pairs=, pair_weight=)`` adds it to the KL.

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
from dgm.training import optim


@dataclass
class DistillResult:
    """What :func:`distill` measured.

    ``history``: one dict per step with ``step``, ``kl`` (the batch estimate of KL(student ‖ teacher),
    nats), ``teacher_nll`` (−log p_teacher of the student's samples, mean), ``student_nll`` (−log q of the
    same samples: the student's entropy estimate), ``beta`` (the annealing's inverse temperature), and for
    flows sharing a logit preprocessing ``teacher_nll_logit`` and ``student_nll_logit`` (the same over
    y = logit(x));
    ``teacher_self_nll``: −log p_teacher of the teacher's own samples (its entropy estimate, the floor of
    ``teacher_nll`` for a perfect student; NaN if not measured).
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
    space: str = "data",
) -> float:
    """``−E_{x ~ teacher}[log p_teacher(x)]``, estimated on ``num_samples`` of the teacher's own samples.

    ``reduce="median"`` gives the median of −log p instead: a density on [0, 1)^D with a logit layer can put
    near-singular spikes at the cube's faces, and a few samples landing there (−log p of −10⁶ nats) swamp
    the mean; the median is the robust level to compare a student with.

    ``space="logit"`` (flows whose first transform is a :class:`Logit`) measures the entropy of the
    teacher's density over y = logit(x), the space its other transforms act in: there the density has no
    spikes (the logit's log-det, unbounded at the faces, is left out), and the mean is a stable estimate.
    """
    if reduce not in ("mean", "median"):
        raise ConfigError(f"reduce must be 'mean' or 'median', got {reduce!r}")
    if space not in ("data", "logit"):
        raise ConfigError(f"space must be 'data' or 'logit', got {space!r}")
    if space == "logit" and not _leading_logit(teacher):
        raise ConfigError(
            f"space='logit' needs a flow whose first transform is a Logit ({type(teacher).__name__})"
        )
    pick = (lambda v: v.mean()) if reduce == "mean" else (lambda v: v.median())
    generator = generator or torch.Generator(teacher.device).manual_seed(0)
    mode = teacher.training
    teacher.eval()  # batch norm layers must use their running statistics, as when scoring data
    try:
        with torch.no_grad():
            context = _labels(teacher, num_samples, generator)
            if space == "logit":
                ctx = teacher._context(context, num_samples)
                z = teacher.base.sample(num_samples, ctx, generator).to(teacher._dtype())
                _, log_det = _inverse_after_logit(teacher, z, ctx)
                return pick(log_det - teacher.base.log_prob(z, ctx)).item()
            if hasattr(teacher, "sample_and_log_prob"):  # no round trip through float32 pixels (module doc)
                return pick(-teacher.sample_and_log_prob(num_samples, context, generator)[1]).item()
            x = teacher.sample(num_samples, context=context, generator=generator)
            return pick(-teacher.log_prob(x, context)).item()
    finally:
        teacher.train(mode)


def _leading_logit(model: GenerativeModel) -> Logit | None:
    """The flow's first transform if it is a :class:`Logit` followed by others, else None."""
    transforms = getattr(getattr(model, "transform", None), "transforms", None)
    if transforms is None or len(transforms) < 2 or not isinstance(transforms[0], Logit):
        return None
    return transforms[0]


def _inverse_after_logit(model: GenerativeModel, z: Tensor, ctx: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(y, log|det ∂y/∂z|)``: the base point z taken back through every transform but the leading logit."""
    y, log_det = z, z.new_zeros(z.shape[0])
    for t in reversed(list(model.transform.transforms)[1:]):
        y, ld = t.inverse_and_log_det(y, ctx)
        log_det = log_det + ld
    return y, log_det


def _pair_image(model: GenerativeModel, z: Tensor, ctx: Tensor | None, logit_space: bool) -> Tensor:
    """The model's sample from base noise z in the pairs' space (:class:`TeacherPairs`): y = logit(x) after a
    leading logit when ``logit_space``, else x."""
    return _inverse_after_logit(model, z, ctx)[0] if logit_space else model.transform.inverse(z, ctx)


def _shared_logit(teacher: GenerativeModel, student: GenerativeModel) -> bool:
    """Whether both are flows whose first transform is the same :class:`Logit` preprocessing."""
    firsts = [_leading_logit(teacher), _leading_logit(student)]
    return None not in firsts and firsts[0].alpha == firsts[1].alpha


def _draw(
    teacher: GenerativeModel,
    student: GenerativeModel,
    n: int,
    context: Tensor | None,
    generator: torch.Generator,
    shared_logit: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(log q(x), log p_teacher(x), log|dx/dy|)`` of ``n`` reparameterised student samples, densities in
    nats on the data scale; through the shared logit space when ``shared_logit`` (see the module
    docstring), whose log-det the third is (zeros without one: adding it gives logit-space densities)."""
    if not shared_logit:
        x, log_q = student.sample_and_log_prob(n, context=context, generator=generator)
        return log_q, teacher.log_prob(x, context), torch.zeros_like(log_q)
    ctx = student._context(context, n)
    z = student.base.sample(n, ctx, generator).to(student._dtype())
    y, log_det = _inverse_after_logit(student, z, ctx)
    # log|dx/dy| of the shared logit, from y: x-space densities are y-space ones minus it.
    _, logit_log_det = student.transform.transforms[0].inverse_and_log_det(y)
    log_q = student.base.log_prob(z, ctx) - log_det - logit_log_det
    t_ctx = teacher._context(context, n)
    u, t_log_det = y.to(teacher._dtype()), 0.0
    for t in list(teacher.transform.transforms)[1:]:
        u, ld = t(u, t_ctx)
        t_log_det = t_log_det + ld
    log_p = teacher.base.log_prob(u, t_ctx) + t_log_det - logit_log_det.to(u.dtype)
    return log_q, log_p, logit_log_det


@dataclass
class TeacherPairs:
    """The teacher's samples with the base noise that drew them: ``target = T_teacher⁻¹(z)``.

    ``target`` lives in the space the flows share after a leading logit (``logit_alpha`` is its α) or,
    without one (``logit_alpha`` None), in data space. ``context``: the class labels of a conditional
    teacher's samples (None if unconditional). ``drawn``: how many samples were drawn to keep these (see
    :func:`teacher_pairs`)."""

    z: Tensor
    target: Tensor
    context: Tensor | None
    logit_alpha: float | None
    drawn: int

    def __len__(self) -> int:
        return self.z.shape[0]


def teacher_pairs(
    teacher: GenerativeModel,
    num_pairs: int,
    generator: torch.Generator | None = None,
    batch_size: int = 500,
    max_draws: int | None = None,
) -> TeacherPairs:
    """Draw ``num_pairs`` teacher samples with their noise (for a MAF: D sequential passes per batch).

    With a leading logit, only samples inside the data's support are kept: every y in
    [logit α, logit(1 − α)], i.e. pixels in [0, 1]. A teacher puts some mass beyond it (on MNIST about 30 %
    of a MAF's samples have a pixel outside, some at |y| ~ 10¹⁰: its noise images); those samples are not
    images, and fitting their noise would bend the student's map everywhere else (a squared error is
    dominated by them, clamped or not). Sampling stops after ``max_draws`` draws (default 20 × num_pairs)
    with a :class:`ConfigError` if too few were inside."""
    if isinstance(num_pairs, bool) or not isinstance(num_pairs, int) or num_pairs < 1:
        raise ConfigError(f"num_pairs must be a positive int, got {num_pairs!r}")
    if getattr(teacher, "base", None) is None or getattr(teacher, "transform", None) is None:
        raise ConfigError(f"teacher_pairs needs a flow (base and transform), got {type(teacher).__name__}")
    max_draws = 20 * num_pairs if max_draws is None else max_draws
    generator = generator or torch.Generator(teacher.device).manual_seed(0)
    logit = _leading_logit(teacher)
    mode = teacher.training
    teacher.eval()
    zs, targets, contexts = [], [], []
    kept = drawn = 0
    try:
        with torch.no_grad():
            while kept < num_pairs:
                if drawn >= max_draws:
                    raise ConfigError(
                        f"only {kept} of {drawn} teacher samples lie inside the data's support; "
                        f"{num_pairs} pairs need more draws (max_draws)"
                    )
                n = batch_size
                context = _labels(teacher, n, generator)
                ctx = teacher._context(context, n)
                z = teacher.base.sample(n, ctx, generator).to(teacher._dtype())
                drawn += n
                y = _pair_image(teacher, z, ctx, logit is not None)
                if logit is None:
                    inside = torch.ones(n, dtype=torch.bool, device=z.device)
                else:
                    inside = y.flatten(1).abs().amax(1) <= math.log((1 - logit.alpha) / logit.alpha)
                zs.append(z[inside])
                targets.append(y[inside])
                if context is not None:
                    contexts.append(context[inside])
                kept += int(inside.sum())
    finally:
        teacher.train(mode)
    return TeacherPairs(
        torch.cat(zs)[:num_pairs],
        torch.cat(targets)[:num_pairs],
        torch.cat(contexts)[:num_pairs] if contexts else None,
        None if logit is None else logit.alpha,
        drawn,
    )


def pair_loss(student: GenerativeModel, pairs: TeacherPairs, index: Tensor) -> Tensor:
    """Mean over ``index`` of the squared distance between the student's image of each pair's noise and the
    teacher's sample, summed over dimensions (per example, like a NLL), in the pairs' space."""
    z = pairs.z[index].to(student._dtype())
    context = None if pairs.context is None else pairs.context[index]
    ctx = student._context(context, z.shape[0])
    if pairs.logit_alpha is not None:
        logit = _leading_logit(student)
        if logit is None or logit.alpha != pairs.logit_alpha:
            raise ConfigError(
                f"the pairs are in the logit space of α = {pairs.logit_alpha}; the student needs the same "
                "leading logit (logit_alpha)"
            )
    y = _pair_image(student, z, ctx, pairs.logit_alpha is not None)
    target = pairs.target[index].to(y.dtype)
    return (y - target).flatten(1).pow(2).sum(1).mean()


def imitate(
    student: GenerativeModel,
    pairs: TeacherPairs,
    num_steps: int = 1000,
    batch_size: int = 64,
    lr: float = 1e-3,
    *,
    grad_clip: float | None = 10.0,
    seed: int = 0,
    max_minutes: float | None = None,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Fit the student's sampling map to the teacher's on paired noise (:func:`teacher_pairs`) by Adam on
    :func:`pair_loss`: a warm start for :func:`distill` that begins from the teacher's diversity rather than
    from a Gaussian. Returns one ``{"step", "pair_loss"}`` per step; the student is left in evaluation
    mode."""
    _check_steps(num_steps, batch_size, lr)
    generator = torch.Generator(pairs.z.device).manual_seed(seed)
    optimizer = _adam(student, lr)
    history = []
    student.train()
    start = time.perf_counter()
    try:
        for step in range(1, num_steps + 1):
            index = torch.randint(0, len(pairs), (batch_size,), generator=generator, device=pairs.z.device)
            loss = pair_loss(student, pairs, index)
            _step(optimizer, loss, student, grad_clip)
            history.append({"step": step, "pair_loss": loss.item()})
            if callback is not None:
                callback(history[-1])
            if max_minutes is not None and time.perf_counter() - start >= 60 * max_minutes:
                break
    finally:
        student.eval()
    return history


def _adam(student: GenerativeModel, lr: float) -> torch.optim.Adam:
    """Adam over the student's trainable parameters (fused updates where torch has them, as the trainer's)."""
    return optim.make("adam", [p for p in student.parameters() if p.requires_grad], lr)


def _step(optimizer: torch.optim.Optimizer, loss: Tensor, student: GenerativeModel, grad_clip) -> None:
    """One optimizer step on ``loss``, the gradient's norm clipped to ``grad_clip`` (None: unclipped)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(student.parameters(), grad_clip)
    optimizer.step()


def _check_steps(num_steps: int, batch_size: int, lr: float) -> None:
    for name, value in (("num_steps", num_steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive int, got {value!r}")
    if not lr > 0:
        raise ConfigError(f"lr must be positive, got {lr}")


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
    anneal_steps: int = 0,
    initial_beta: float = 1.0,
    pairs: TeacherPairs | None = None,
    pair_weight: float = 0.0,
) -> DistillResult:
    """Minimise KL(student ‖ teacher) on the student's own samples with Adam; the teacher is frozen.

    Annealing (``anneal_steps > 0``): the first steps minimise E_q[log q − β log p_teacher], whose minimiser
    is the tempered teacher q ∝ p^β, with the inverse temperature β rising linearly from ``initial_beta`` to
    1 over ``anneal_steps`` (then the plain KL): a flattened target first spreads the student out, so that
    it can reach more of a multimodal teacher's modes before the KL's mode seeking sets in (annealed
    variational objectives: Huang et al. 2018, "Improving explorability in variational inference with
    annealed variational objectives"). It is no cure: on MNIST (β from 0.2 over 1,500 steps) the student
    still ended on the "1"s, while the paired loss (``pairs``, ``pair_weight``) kept it diverse.

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
        anneal_steps, initial_beta: the inverse-temperature schedule above (0: none).
        pairs, pair_weight: add ``pair_weight`` × :func:`pair_loss` on a batch of ``pairs`` (the teacher's
            samples with their noise) to every step's loss, an auxiliary loss against collapse (module doc).

    Returns:
        a :class:`DistillResult` (the student is trained in place and left in evaluation mode).
    """
    if not hasattr(student, "sample_and_log_prob"):
        raise ConfigError(f"the student ({type(student).__name__}) needs sample_and_log_prob, e.g. an iaf")
    if tuple(teacher.event_shape) != tuple(student.event_shape):
        raise ConfigError(f"teacher event shape {teacher.event_shape} != student's {student.event_shape}")
    if getattr(teacher, "num_classes", None) != getattr(student, "num_classes", None):
        raise ConfigError("teacher and student must both be unconditional or have the same num_classes")
    _check_steps(num_steps, batch_size, lr)
    if pair_weight < 0 or (pair_weight > 0 and pairs is None):
        raise ConfigError(f"pair_weight must be >= 0, and > 0 needs pairs (teacher_pairs); got {pair_weight}")
    if isinstance(anneal_steps, bool) or not isinstance(anneal_steps, int) or anneal_steps < 0:
        raise ConfigError(f"anneal_steps must be an int >= 0, got {anneal_steps!r}")
    if not 0 < initial_beta <= 1:
        raise ConfigError(f"initial_beta must be in (0, 1], got {initial_beta}")

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
        optimizer = _adam(student, lr)
        start = time.perf_counter()
        for step in range(1, num_steps + 1):
            context = _labels(student, batch_size, generator)
            log_q, log_p, logit_log_det = _draw(
                teacher, student, batch_size, context, generator, shared_logit
            )
            log_p = log_p.to(log_q.dtype)
            kl = (log_q - log_p).mean()
            beta = (
                initial_beta + (1 - initial_beta) * min(1.0, (step - 1) / anneal_steps)
                if anneal_steps
                else 1.0
            )
            loss = kl if beta == 1.0 else (log_q - beta * log_p).mean()
            if pair_weight:
                index = torch.randint(
                    0, len(pairs), (batch_size,), generator=generator, device=pairs.z.device
                )
                paired = pair_loss(student, pairs, index)
                loss = loss + pair_weight * paired
            _step(optimizer, loss, student, grad_clip)
            record = {
                "step": step,
                "kl": kl.item(),
                "teacher_nll": -log_p.mean().item(),
                "student_nll": -log_q.mean().item(),
                "beta": beta,
            }
            if pair_weight:
                record["pair_loss"] = paired.item()
            if shared_logit:  # the same over y = logit(x), free of the logit's spikes (teacher_entropy)
                shift = logit_log_det.mean().item()
                record["teacher_nll_logit"] = record["teacher_nll"] - shift
                record["student_nll_logit"] = record["student_nll"] - shift
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
    ``student_nll`` (means, nats), their standard errors ``*_se`` and medians ``*_median``. For flows sharing
    a logit preprocessing also ``teacher_nll_logit`` and ``student_nll_logit`` (with ``_se``, ``_median``):
    the same densities over y = logit(x) (see :func:`teacher_entropy`'s ``space``; KL is the same in both)."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise ConfigError(f"num_samples must be an int >= 2, got {num_samples!r}")
    generator = torch.Generator(student.device).manual_seed(seed)
    shared_logit = _shared_logit(teacher, student)
    modes = teacher.training, student.training
    teacher.eval(), student.eval()
    try:
        with torch.no_grad():
            context = _labels(student, num_samples, generator)
            log_q, log_p, logit_log_det = _draw(
                teacher, student, num_samples, context, generator, shared_logit
            )
    finally:
        teacher.train(modes[0]), student.train(modes[1])
    log_p, logit_log_det = log_p.to(log_q.dtype), logit_log_det.to(log_q.dtype)
    out = {}
    pairs = [("kl", log_q - log_p), ("teacher_nll", -log_p), ("student_nll", -log_q)]
    if shared_logit:  # p_y(y) = p_x(x)·|dx/dy|
        pairs += [
            ("teacher_nll_logit", -log_p - logit_log_det),
            ("student_nll_logit", -log_q - logit_log_det),
        ]
    for key, values in pairs:
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
