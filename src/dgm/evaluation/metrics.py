"""NLL in nats per example and bits per dimension, as every table in `dgm` reports them (DESIGN.md §4)."""

from __future__ import annotations

import inspect
import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from dgm.core.errors import DataError


def bits_per_dim(nll_nats: float | Tensor, num_dims: int) -> float | Tensor:
    """bits/dim = NLL / (D · ln 2)."""
    return nll_nats / (num_dims * math.log(2))


def _as_dataset(data):
    from dgm.data.dataset import Dataset

    if isinstance(data, Dataset):
        return data
    if isinstance(data, Tensor):
        return Dataset(name="tensor", split="-", x=data)
    if isinstance(data, tuple) and len(data) == 2:
        return Dataset(name="tensor", split="-", x=data[0], y=data[1])
    raise DataError(f"expected a dgm Dataset, a tensor or an (x, y) pair, got {type(data).__name__}")


@torch.no_grad()
def log_prob_dataset(
    model,
    data,
    batch_size: int = 1000,
    generator: torch.Generator | None = None,
    progress: bool = False,
    **log_prob_options,
) -> Tensor:
    """``model.log_prob`` of every example, in order, as a float64 CPU tensor of shape ``(N,)``.

    ``log_prob_options`` (e.g. ``num_samples`` for latent-variable models) are passed through. With
    ``progress`` a bar counts the batches (on a terminal only): scoring MNIST's test set under MADE's 32
    masks or an importance-sampled estimate with K = 5000 takes minutes on a CPU.
    """
    data = _as_dataset(data)
    was_training = model.training
    model.eval()
    bar = tqdm(
        total=math.ceil(len(data) / batch_size),
        desc=f"scoring {data.name}/{data.split}",
        unit="batch",
        disable=None if progress else True,  # None: a bar only on a terminal
        leave=False,
        dynamic_ncols=True,
    )
    try:
        out = []
        for x, y in data.batches(batch_size, generator=generator):
            context = y.to(model.device) if (model.conditional and y is not None) else None
            out.append(model.log_prob(x.to(model.device), context, **log_prob_options).double().cpu())
            bar.update(1)
    finally:
        bar.close()
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


@torch.no_grad()
def accuracy(model, data, batch_size: int = 1000) -> float:
    """Fraction of examples whose ``model.predict(x)`` equals the label (classifiers, generative or not)."""
    data = _as_dataset(data)
    was_training = model.training
    model.eval()
    try:
        correct = sum(
            (model.predict(x.to(model.device)).cpu() == y.long()).sum().item()
            for x, y in data.batches(batch_size)
        )
    finally:
        model.train(was_training)
    return correct / len(data)


def evaluate(
    model, data, batch_size: int = 1000, generator=None, progress: bool = False, **log_prob_options
) -> dict:
    """Mean NLL (nats per example) with its standard error, bits/dim, and what the figure is.

    The returned dict says whether the figure is exact or an estimate, on which split of which data,
    and with which binarisation — every reported figure states these (DESIGN.md §4). For dequantised data
    (a dataset with ``dequantization_log_det``) NLL and bits/dim are on the integer scale 0..levels-1,
    that constant added (and reported as ``dequantization_log_det``). To keep the per-example values
    too, score once with :func:`log_prob_dataset` and pass them to :func:`summarize_log_probs`.
    """
    data = _as_dataset(data)
    lp = log_prob_dataset(model, data, batch_size, generator, progress, **log_prob_options)
    return summarize_log_probs(model, data, lp, batch_size, **log_prob_options)


def summarize_log_probs(model, data, log_probs: Tensor, batch_size: int = 1000, **log_prob_options) -> dict:
    """:func:`evaluate`'s result from per-example ``log_probs`` already computed by
    :func:`log_prob_dataset` on ``data`` with the same ``log_prob_options`` (an estimate then states the
    same K, and its mean is that of the values a user keeps)."""
    data = _as_dataset(data)
    lp = log_probs
    if lp.shape != (len(data),):
        raise DataError(
            f"log_probs has shape {tuple(lp.shape)}; {data.name}/{data.split} has {len(data)} examples"
        )
    n = len(lp)
    if n == 0:
        raise DataError(f"{data.name}/{data.split} has no examples to evaluate")
    # Dequantised data rescaled to [0, 1) by 1/levels: the NLL on the integer scale of the papers is higher
    # by D·log(levels) nats (DESIGN.md §4); the dataset carries that constant.
    offset = float(getattr(data, "dequantization_log_det", 0.0))
    nll = -lp.mean().item() + offset
    stderr = lp.std().item() / math.sqrt(n) if n > 1 else float("nan")
    discriminative = bool(getattr(model, "discriminative", False))
    result = {
        "nll": nll,
        "nll_stderr": stderr,
        # A discriminative model's NLL is of the labels, one per example: there is no per-dimension figure.
        "bits_per_dim": None if discriminative else bits_per_dim(nll, model.num_dims),
        "num_dims": model.num_dims,
        "exact": bool(model.exact),
        "num_examples": n,
        "dataset": data.name,
        "split": data.split,
        "binarization": data.binarization,
    }
    if offset:
        result["dequantization_log_det"] = offset
    if discriminative:
        result["likelihood_of"] = "labels given inputs, log p(y | x)"
    elif model.conditional and data.y is not None:
        # y holds class labels (N,) or, for an image-conditioned model, the conditioning images.
        labels = data.y.dim() == 1
        result["likelihood_of"] = (
            "inputs given labels, log p(x | y)" if labels else "inputs given the context, log p(x | context)"
        )
    if callable(getattr(model, "predict_proba", None)) and data.y is not None and data.num_classes:
        result["accuracy"] = accuracy(model, data, batch_size)
    if not model.exact and "num_samples" not in log_prob_options:
        # An estimate states its K (DESIGN.md §4), the model's default when none was passed.
        default = getattr(model, "default_num_samples", None)
        parameter = inspect.signature(model.log_prob).parameters.get("num_samples")
        if isinstance(default, int) and parameter is not None:
            result["num_samples"] = default
    if log_prob_options:
        result.update({k: v for k, v in log_prob_options.items() if isinstance(v, int | float | str)})
    return result
