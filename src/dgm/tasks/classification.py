"""Generative classification: Bayes' rule over class-conditional densities, and sources told apart by
likelihood.

    p(y | x) = p(y) p(x | y) / Σ_c p(c) p(x | c)

The class-conditional densities come either from one conditional model (built with ``num_classes``:
log p(x | y) = ``log_prob(x, context=y)`` for every y) or from one model per class (model c trained on the
examples of class c only). The prior p(y) is the label frequency of the training data, the model's own
prior where it has one (naive Bayes' ``prior()``), or uniform.

Telling two sources apart by likelihood (the CS236 homework: a character model trained on Shakespeare
scores Shakespeare far higher than random character strings) is the one-model case of the same idea:
a threshold on the per-value NLL, chosen on one half of each source and tested on the other half
(:func:`source_test`). With one model per source, Bayes' rule compares them directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dgm.core.errors import ConfigError, DataError


def needs_context(model) -> bool:
    """True for a class-conditional model whose ``log_prob`` needs the label (not naive Bayes, which
    answers the marginal without one)."""
    return bool(model.conditional and getattr(model, "num_classes", None) and not hasattr(model, "prior"))


def _as_models(models) -> list:
    if isinstance(models, list | tuple):
        if not models:
            raise ConfigError("no model given")
        return list(models)
    return [models]


def _check_per_class(models: list) -> None:
    shapes = {tuple(m.event_shape) for m in models}
    if len(shapes) > 1:
        raise DataError(f"the per-class models have different event shapes: {sorted(shapes)}")
    supports = {str(m.support) for m in models}
    if len(supports) > 1:
        raise DataError(f"the per-class models have different supports: {sorted(supports)}")
    for m in models:
        if needs_context(m):
            raise ConfigError(f"{m.name} is class-conditional: give it alone, not as one model per class")
        if getattr(m, "discriminative", False):
            raise ConfigError(f"{m.name} is discriminative (p(y | x)); Bayes' rule needs densities p(x | y)")


def num_classes_of(models) -> int:
    """C: the number of models, or a single conditional model's ``num_classes``."""
    models = _as_models(models)
    if len(models) > 1:
        return len(models)
    model = models[0]
    if getattr(model, "discriminative", False):
        raise ConfigError(f"{model.name} is discriminative (p(y | x)); Bayes' rule needs densities p(x | y)")
    c = getattr(model, "num_classes", None)
    if not model.conditional or not c:
        raise ConfigError(
            f"{model.name} is not class-conditional (built without num_classes): give a conditional model, "
            "one model per class, or tell two sources apart by likelihood (source_test, classify --against)"
        )
    return int(c)


@torch.no_grad()
def class_log_likelihoods(models, x: Tensor, batch_size: int = 1000, **log_prob_options) -> Tensor:
    """log p(x | y) for every example and class, float64 on the CPU, shape (N, C).

    ``models``: one class-conditional model (every label is passed as ``context``) or a list of models,
    one per class (model c scores every example).
    """
    models = _as_models(models)
    C = num_classes_of(models)
    if len(models) > 1:
        _check_per_class(models)
    out = torch.empty(len(x), C, dtype=torch.float64)
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        for c in range(C):
            model = models[c] if len(models) > 1 else models[0]
            was_training = model.training
            model.eval()
            try:
                if len(models) > 1:
                    lp = model.log_prob(xb.to(model.device), **log_prob_options)
                else:
                    labels = torch.full((len(xb),), c, dtype=torch.long, device=model.device)
                    lp = model.log_prob(xb.to(model.device), labels, **log_prob_options)
            finally:
                model.train(was_training)
            out[i : i + len(xb), c] = lp.double().cpu()
    return out


def class_log_prior(num_classes: int, labels: Tensor | None = None, alpha: float = 1.0, model=None) -> Tensor:
    """log p(y), shape (C,): the model's own prior (``prior()``), else label frequencies smoothed by
    ``alpha`` pseudo-counts, else uniform (no labels)."""
    if model is not None and callable(getattr(model, "prior", None)):
        return model.prior().logits.detach().double().cpu()
    if labels is None:
        return torch.full((num_classes,), -math.log(num_classes), dtype=torch.float64)
    labels = torch.as_tensor(labels).long().cpu()
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"labels must lie in 0..{num_classes - 1} for {num_classes} classes")
    counts = torch.bincount(labels, minlength=num_classes).double() + alpha
    if counts.sum() == 0:
        raise DataError("no labels to estimate the class prior from")
    return (counts / counts.sum()).clamp_min(1e-300).log()


def log_posterior(log_likelihoods: Tensor, log_prior: Tensor) -> Tensor:
    """Bayes' rule in log space: log p(y | x) = log p(y) + log p(x | y) − logsumexp_c (…), shape (N, C)."""
    log_likelihoods = torch.as_tensor(log_likelihoods, dtype=torch.float64)
    log_prior = torch.as_tensor(log_prior, dtype=torch.float64)
    if log_likelihoods.dim() != 2 or log_prior.shape != (log_likelihoods.shape[1],):
        raise DataError(
            f"log-likelihoods {tuple(log_likelihoods.shape)} and prior {tuple(log_prior.shape)} do not "
            "match: expected (N, C) and (C,)"
        )
    return (log_likelihoods + log_prior).log_softmax(1)


@dataclass
class ClassificationResult:
    """Bayes-rule posteriors of a batch: ``log_posterior`` (N, C), ``predictions`` (N,), ``accuracy``
    (None without labels), and the ``log_likelihoods`` (N, C) and ``log_prior`` (C,) they came from."""

    log_posterior: Tensor
    predictions: Tensor
    log_likelihoods: Tensor
    log_prior: Tensor
    accuracy: float | None = None
    mean_log_posterior: float | None = None  # mean log p(y_true | x): the classifier's log-likelihood


def classify(
    models,
    x: Tensor,
    labels: Tensor | None = None,
    *,
    log_prior: Tensor | None = None,
    batch_size: int = 1000,
) -> ClassificationResult:
    """Classify ``x`` by Bayes' rule over the class-conditional densities of ``models``.

    ``log_prior`` defaults to the model's own prior (naive Bayes) or uniform; pass
    :func:`class_log_prior` of the training labels for label frequencies.
    """
    models = _as_models(models)
    C = num_classes_of(models)
    ll = class_log_likelihoods(models, x, batch_size)
    if log_prior is None:
        log_prior = class_log_prior(C, model=models[0] if len(models) == 1 else None)
    post = log_posterior(ll, log_prior)
    pred = post.argmax(1)
    acc = mean_lp = None
    if labels is not None:
        labels = torch.as_tensor(labels).long().cpu()
        if len(labels) != len(x):
            raise DataError(f"{len(labels)} labels for {len(x)} examples")
        if len(labels) and (labels.min() < 0 or labels.max() >= C):
            raise DataError(f"labels must lie in 0..{C - 1} for {C} classes")
        acc = float((pred == labels).double().mean()) if len(labels) else float("nan")
        mean_lp = float(post.gather(1, labels[:, None]).mean()) if len(labels) else float("nan")
    return ClassificationResult(post, pred, ll, torch.as_tensor(log_prior, dtype=torch.float64), acc, mean_lp)


# ---------------------------------------------------------------------------- sources by likelihood
def best_threshold(scores_a: Tensor, scores_b: Tensor) -> float:
    """The threshold t maximising balanced accuracy of "score ≤ t → source a" (a scores lower: its NLL)."""
    a = torch.as_tensor(scores_a, dtype=torch.float64).flatten()
    b = torch.as_tensor(scores_b, dtype=torch.float64).flatten()
    if not len(a) or not len(b):
        raise DataError("each source needs at least one example to fit a threshold")
    cand = torch.cat([a, b]).unique()
    mid = torch.cat([cand[:1] - 1, (cand[1:] + cand[:-1]) / 2, cand[-1:] + 1])
    acc = ((a[None, :] <= mid[:, None]).double().mean(1) + (b[None, :] > mid[:, None]).double().mean(1)) / 2
    return float(mid[acc.argmax()])


def source_test(
    model,
    x_a: Tensor,
    x_b: Tensor,
    *,
    batch_size: int = 1000,
    generator: torch.Generator | None = None,
) -> dict:
    """Tell source a (the model's own kind of data) from source b by the model's NLL per value.

    Each source is split at random in halves: the threshold maximising balanced accuracy is chosen on the
    first halves and the accuracy reported on the second. AUROC (threshold-free, all examples, b positive)
    is reported too. Returns a dict: ``nll_per_dim_a``, ``nll_per_dim_b`` (means, nats per value),
    ``threshold``, ``accuracy`` (balanced, held-out halves), ``auroc``, and the example counts.
    """
    from dgm.tasks.anomaly import nll_scores, roc_auc

    s_a = nll_scores(model, x_a, batch_size) / model.num_dims
    s_b = nll_scores(model, x_b, batch_size) / model.num_dims
    if len(s_a) < 2 or len(s_b) < 2:
        raise DataError("each source needs at least 2 examples (one to fit the threshold, one to test it)")
    pa, pb = torch.randperm(len(s_a), generator=generator), torch.randperm(len(s_b), generator=generator)
    fa, ta = s_a[pa[: len(pa) // 2]], s_a[pa[len(pa) // 2 :]]
    fb, tb = s_b[pb[: len(pb) // 2]], s_b[pb[len(pb) // 2 :]]
    t = best_threshold(fa, fb)
    accuracy = float(((ta <= t).double().mean() + (tb > t).double().mean()) / 2)
    labels = torch.cat([torch.zeros(len(s_a)), torch.ones(len(s_b))])
    return {
        "nll_per_dim_a": float(s_a.mean()),
        "nll_per_dim_b": float(s_b.mean()),
        "threshold": t,
        "accuracy": accuracy,
        "auroc": roc_auc(labels, torch.cat([s_a, s_b])),
        "num_a": len(s_a),
        "num_b": len(s_b),
    }


def score_text(model, text: str, vocab: str) -> Tensor:
    """log p of each consecutive chunk of ``text`` (chunks of the model's sequence length), in nats.

    For a character model trained on text (event shape ``(T,)``, categorical over ``vocab``); a string
    shorter than T, or with characters outside the vocabulary, is a DataError.
    """
    from dgm.data.sources import encode
    from dgm.tasks.anomaly import log_likelihood

    T = model.num_dims
    if len(model.event_shape) != 1:
        raise DataError(f"{model.name} does not model text (event shape {tuple(model.event_shape)})")
    ids = encode(text, vocab)
    if len(ids) < T:
        raise DataError(f"the text has {len(ids)} characters; the model scores sequences of {T}")
    n = len(ids) // T
    return log_likelihood(model, ids[: n * T].reshape(n, T).float())
