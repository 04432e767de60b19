"""Anomaly and out-of-distribution detection with a density model.

Every score here is oriented so that **higher means more anomalous**, and out-of-distribution examples are
the positive class of AUROC / AUPR.

``nll``, ``bits/dim``
    −log p(x) in nats, and the same divided by D ln 2 (the same ranking for a fixed D).
``-llr``
    Likelihood ratio against a background model (Ren et al. 2019, "Likelihood Ratios for
    Out-of-Distribution Detection", NeurIPS): LLR(x) = log p_model(x) − log p_background(x). The background
    model captures the population-level statistics that dominate raw likelihoods — e.g. how many pixels
    are background — so the ratio keeps the semantic part; whatever term both models share cancels
    exactly. Two kinds of background: Ren et al.'s, the same model trained on perturbed inputs (see
    :func:`perturb`); and a *local* one, a model that sees only a small neighbourhood of each value (e.g. a
    PixelCNN with one 3×3 masked layer, Schirrmeister et al. 2020), which captures smoothness and
    background level but no global shape — the one that fixes the simple-input failure on binarised MNIST
    (benchmarks/RESULTS.md). Model and background may differ in layout (flat vs image) but not in size.
``typicality(M)``
    Nalisnick, Matsukawa, Teh & Lakshminarayanan (2019), "Detecting Out-of-Distribution Inputs to Deep
    Generative Models Using Typicality": |(1/M) Σ_m −log p(x_m) − Ĥ|, where Ĥ is the mean NLL of the
    training data (an estimate of the entropy), for batches of M inputs (M = 1: per example). An input far
    from the typical set is flagged even when its likelihood is *higher* than the data's — the known failure
    of raw likelihoods on simple out-of-distribution inputs (e.g. constant or low-contrast images).

AUROC, AUPR (average precision) and the false-positive rate at 95% true-positive rate are computed in
torch; the tests check them against scikit-learn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from dgm.core.errors import DataError
from dgm.core.support import Support


# ---------------------------------------------------------------------------- scores
def _rows(data) -> tuple[Tensor, Tensor | None]:
    x = getattr(data, "x", data)
    if not isinstance(x, Tensor):
        raise DataError(f"expected a Dataset or a tensor of examples, got {type(data).__name__}")
    if getattr(data, "transform", None) is not None:
        raise DataError(f"{data.name} has a random transform; draw it once before scoring")
    return x, getattr(data, "y", None)


@torch.no_grad()
def log_likelihood(model, data, batch_size: int = 1000, **log_prob_options) -> Tensor:
    """log p(x) of every example in nats, float64 on the CPU, shape (N,).

    Class-conditional models that need a context are marginalised over their classes with a uniform
    prior: log p(x) = logsumexp_y log p(x | y) − log C (an out-of-distribution input has no label).
    """
    from dgm.tasks.classification import class_log_likelihoods, needs_context

    x, _ = _rows(data)
    shape = tuple(getattr(model, "event_shape", ()) or ())
    if shape and tuple(x.shape[1:]) != shape and x[0].numel() == math.prod(shape):
        # Same values, other layout: a flat MADE and an image PixelCNN score the same images (a model and
        # its background need not share an architecture).
        x = x.reshape(len(x), *shape)
    was_training = model.training
    model.eval()
    try:
        if needs_context(model):
            ll = class_log_likelihoods(model, x, batch_size=batch_size, **log_prob_options)
            return (ll.logsumexp(1) - math.log(ll.shape[1])).double()
        out = [
            model.log_prob(x[i : i + batch_size].to(model.device), **log_prob_options).double().cpu()
            for i in range(0, len(x), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def nll_scores(model, data, batch_size: int = 1000, **log_prob_options) -> Tensor:
    """−log p(x) in nats per example (higher = more anomalous)."""
    return -log_likelihood(model, data, batch_size, **log_prob_options)


def bits_per_dim_scores(model, data, batch_size: int = 1000, **log_prob_options) -> Tensor:
    """−log p(x) / (D ln 2) per example."""
    return nll_scores(model, data, batch_size, **log_prob_options) / (model.num_dims * math.log(2))


def _check_background(model, background) -> None:
    """A background may have another layout (flat MADE, image PixelCNN) but must model the same values."""
    if math.prod(model.event_shape) != math.prod(background.event_shape):
        raise DataError(
            f"the background model's event shape {tuple(background.event_shape)} has "
            f"{math.prod(background.event_shape)} values, the model's {tuple(model.event_shape)} has "
            f"{math.prod(model.event_shape)}: they must model the same data"
        )


def likelihood_ratio(model, background, data, batch_size: int = 1000) -> Tensor:
    """LLR(x) = log p_model(x) − log p_background(x) per example (Ren et al. 2019); low = anomalous."""
    _check_background(model, background)
    return log_likelihood(model, data, batch_size) - log_likelihood(background, data, batch_size)


def typicality_scores(
    nll: Tensor, entropy: float, batch_size: int = 1, generator: torch.Generator | None = None
) -> Tensor:
    """|mean NLL of a batch of M − Ĥ| for random batches of M = ``batch_size`` examples.

    The examples are shuffled (with ``generator``) and cut into ⌊N / M⌋ batches; one score per batch.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"typicality batch size must be a positive int, got {batch_size!r}")
    nll = torch.as_tensor(nll, dtype=torch.float64).flatten()
    groups = len(nll) // batch_size
    if groups == 0:
        raise DataError(f"{len(nll)} examples do not make one typicality batch of {batch_size}")
    if batch_size > 1:
        nll = nll[torch.randperm(len(nll), generator=generator)]
    means = nll[: groups * batch_size].reshape(groups, batch_size).mean(1)
    return (means - entropy).abs()


def perturb(x: Tensor, rate: float, support: str, generator: torch.Generator | None = None) -> Tensor:
    """Ren et al.'s input perturbation for training a background model: each value is replaced, with
    probability ``rate``, by a uniform draw from the support (real data: a standard normal draw)."""
    if not 0 <= rate <= 1:
        raise DataError(f"perturbation rate must be in [0, 1], got {rate!r}")
    sup = Support.parse(support)
    replace = torch.rand(x.shape, generator=generator) < rate
    if sup.discrete:
        noise = torch.randint(sup.num_categories, x.shape, generator=generator).to(x.dtype)
    else:
        noise = torch.randn(x.shape, generator=generator).to(x.dtype)
    return torch.where(replace.to(x.device), noise.to(x.device), x)


# ---------------------------------------------------------------------------- metrics
def _labels_scores(labels, scores) -> tuple[Tensor, Tensor]:
    labels = torch.as_tensor(labels).flatten().to(torch.float64)
    scores = torch.as_tensor(scores).flatten().to(torch.float64)
    if len(labels) != len(scores):
        raise DataError(f"{len(labels)} labels for {len(scores)} scores")
    if not ((labels == 0) | (labels == 1)).all():
        raise DataError("labels must be 0 (in-distribution) or 1 (out-of-distribution)")
    if labels.sum() == 0 or labels.sum() == len(labels):
        raise DataError("AUROC/AUPR need both in- and out-of-distribution examples")
    if not torch.isfinite(scores).all():
        raise DataError("scores contain NaN or inf")
    return labels, scores


def _curve(labels: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
    """Cumulative true and false positives at each distinct threshold, from the highest score down."""
    order = torch.argsort(scores, descending=True, stable=True)
    s, y = scores[order], labels[order]
    last = torch.ones(len(s), dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]  # the last example of each run of tied scores
    tp = torch.cumsum(y, 0)[last]
    fp = torch.cumsum(1 - y, 0)[last]
    return tp, fp


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (positive = label 1 = higher score), ties counted as half."""
    labels, scores = _labels_scores(labels, scores)
    tp, fp = _curve(labels, scores)
    # Trapezoids on the integer counts, one division at the end: exact for whole-number areas.
    tp, fp = torch.cat([tp.new_zeros(1), tp]), torch.cat([fp.new_zeros(1), fp])
    area = (torch.diff(fp) * (tp[1:] + tp[:-1])).sum() / 2
    return float(area / (tp[-1] * fp[-1]))


def average_precision(labels, scores) -> float:
    """Area under the precision–recall curve as Σ_n (R_n − R_{n−1}) P_n over thresholds (scikit-learn's
    ``average_precision_score``; no interpolation)."""
    labels, scores = _labels_scores(labels, scores)
    tp, fp = _curve(labels, scores)
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    steps = torch.diff(torch.cat([recall.new_zeros(1), recall]))
    return float((steps * precision).sum())


def fpr_at_tpr(labels, scores, tpr: float = 0.95) -> float:
    """The false-positive rate at the first threshold whose true-positive rate reaches ``tpr``."""
    labels, scores = _labels_scores(labels, scores)
    tp, fp = _curve(labels, scores)
    reached = (tp / tp[-1] >= tpr - 1e-12).nonzero()[0, 0]
    return float(fp[reached] / fp[-1])


def ood_metrics(scores_in, scores_out) -> dict[str, float]:
    """AUROC, AUPR (out-of-distribution positive) and FPR at 95% TPR for scores oriented high = anomalous."""
    scores_in = torch.as_tensor(scores_in, dtype=torch.float64).flatten()
    scores_out = torch.as_tensor(scores_out, dtype=torch.float64).flatten()
    labels = torch.cat([torch.zeros(len(scores_in)), torch.ones(len(scores_out))])
    scores = torch.cat([scores_in, scores_out])
    return {
        "auroc": roc_auc(labels, scores),
        "aupr": average_precision(labels, scores),
        "fpr95": fpr_at_tpr(labels, scores, 0.95),
    }


# ---------------------------------------------------------------------------- one call
@dataclass
class AnomalyReport:
    """Per score: AUROC, AUPR, FPR@95%TPR and the mean score of each set (``rows``); the settings used."""

    rows: dict[str, dict[str, float]]
    num_in: int
    num_out: int
    exact: bool
    entropy: float | None = None
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        cols = f"{'mean in':>12}{'mean out':>12}{'AUROC':>8}{'AUPR':>8}{'FPR95':>8}"
        lines = [f"{'score (high = anomalous)':<26}{cols}"]
        for name, r in self.rows.items():
            lines.append(
                f"{name:<26}{r['mean_in']:>12.4f}{r['mean_out']:>12.4f}{r['auroc']:>8.4f}{r['aupr']:>8.4f}"
                f"{r['fpr95']:>8.4f}"
            )
        return "\n".join(lines)


def detect(
    model,
    in_data,
    out_data,
    *,
    background=None,
    reference=None,
    typicality_batches: tuple[int, ...] = (1,),
    batch_size: int = 1000,
    generator: torch.Generator | None = None,
) -> AnomalyReport:
    """Score in- and out-of-distribution data with every available score and report AUROC / AUPR.

    Args:
        model: any model with ``log_prob``.
        in_data, out_data: Datasets or tensors ``(N, *event_shape)`` (held-out in-distribution data, and the
            out-of-distribution data).
        background: a second model for the likelihood ratio (omitted when None).
        reference: in-distribution data (the training split) whose mean NLL is the typicality test's
            entropy estimate Ĥ (the typicality rows are omitted when None).
        typicality_batches: batch sizes M of the typicality test.
    """
    rows: dict[str, dict[str, float]] = {}
    notes = []

    def add(name: str, s_in: Tensor, s_out: Tensor) -> None:
        rows[name] = {
            "mean_in": float(s_in.mean()),
            "mean_out": float(s_out.mean()),
            **ood_metrics(s_in, s_out),
        }

    nll_in, nll_out = nll_scores(model, in_data, batch_size), nll_scores(model, out_data, batch_size)
    add("nll (nats)", nll_in, nll_out)
    scale = model.num_dims * math.log(2)
    add("bits/dim", nll_in / scale, nll_out / scale)
    if background is not None:
        _check_background(model, background)
        llr_in = -nll_in - log_likelihood(background, in_data, batch_size)
        llr_out = -nll_out - log_likelihood(background, out_data, batch_size)
        add("-llr (vs background)", -llr_in, -llr_out)
    entropy = None
    if reference is not None:
        entropy = float(nll_scores(model, reference, batch_size).mean())
        for m in typicality_batches:
            if len(nll_in) < m or len(nll_out) < m:
                notes.append(f"typicality(M={m}) skipped: fewer than {m} examples in a set")
                continue
            t_in = typicality_scores(nll_in, entropy, m, generator)
            t_out = typicality_scores(nll_out, entropy, m, generator)
            if len(t_in) and len(t_out):
                add(f"typicality(M={m})", t_in, t_out)
    if not model.exact:
        notes.append(f"{model.name}'s log_prob is an estimate (≈)")
    return AnomalyReport(rows, len(nll_in), len(nll_out), bool(model.exact), entropy, notes)
