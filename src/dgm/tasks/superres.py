"""Super-resolution: sample a full-resolution image consistent with a low-resolution one, x ~ p(x | h).

The low-resolution image h is the average pooling of x over factor×factor blocks (:func:`downsample`):
for binary images the fraction of ones in each block, for categorical(k) images the block mean of
x/(k−1), so h always lies in [0, 1]. A model conditioned on h is an image-conditioned PixelCNN
(``pixelcnn`` / ``gated-pixelcnn`` built with ``context_shape=[C, H/f, W/f]``; van den Oord et al. 2016b,
"Conditional Image Generation with PixelCNN Decoders", eq. 5): trained with ``dgm.train`` on
:func:`low_resolution` (the same dataset with ``y`` = h, which the trainer passes as context), its exact
``log_prob(x, h)`` is the conditional NLL, and its samples are super-resolutions.

Two figures say how good it is: the conditional NLL −log p(x | h) of held-out images (against the
unconditional −log p(x) of a model of the same size: the information h gives about x), and the
consistency error of samples, the mean absolute difference between downsample(sample) and h
(:func:`consistency_error`; 0 means every block has exactly the conditioning average). An unconditional
model's samples set the baseline consistency error: that of images unrelated to h.

>>> from dgm.tasks.superres import low_resolution, evaluate_super_resolution
>>> train = low_resolution(dgm.data.load("binarized-mnist", "train").reshape_to((1, 28, 28)), 4)
>>> model = dgm.build("gated-pixelcnn", event_shape=(1, 28, 28), context_shape=[1, 7, 7])
>>> dgm.train(model, train)                                  # y = the 7×7 images, passed as context
>>> res = evaluate_super_resolution(model, test_x[:8], factor=4, num_samples=4)
>>> res.samples.shape, res.describe()                        # (8, 4, 1, 28, 28)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from dgm.core.errors import DataError
from dgm.core.support import Support


def _factor(factor) -> int:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise DataError(f"factor must be a positive int, got {factor!r}")
    return factor


def _scale_of(support) -> float:
    """What x is divided by to lie in [0, 1]: k−1 for categorical(k), 1 for binary and real data."""
    s = Support.parse(support)
    return float(s.num_categories - 1) if s.kind == "categorical" else 1.0


def downsample(x: Tensor, factor: int, support="binary") -> Tensor:
    """Average pooling of images over factor×factor blocks: (..., C, H, W) → (..., C, H/f, W/f) in [0, 1].

    ``support`` is the images' support: binary images give the fraction of ones per block, categorical(k)
    images are divided by k−1 first; real images are averaged as they are.
    """
    factor = _factor(factor)
    if not isinstance(x, Tensor):
        raise DataError(f"images must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 3:
        raise DataError(f"images must have shape (..., C, H, W), got {tuple(x.shape)}")
    H, W = x.shape[-2:]
    if H % factor or W % factor:
        raise DataError(f"factor {factor} does not divide the image size {H}x{W}")
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:]).float() / _scale_of(support)
    out = F.avg_pool2d(flat, factor) if factor > 1 else flat
    return out.reshape(*lead, *out.shape[-3:])


def upsample(low: Tensor, factor: int) -> Tensor:
    """Nearest-neighbour upsampling (..., C, h, w) → (..., C, h·f, w·f), e.g. to draw h beside samples."""
    factor = _factor(factor)
    return low.repeat_interleave(factor, -2).repeat_interleave(factor, -1)


def _images_of(dataset) -> Tensor:
    x = dataset.x
    if x.dim() == 4:
        return x
    if dataset.image_shape is None:
        raise DataError(f"{dataset.name} is not image data: super-resolution needs (C, H, W) images")
    return x.reshape(len(x), *dataset.image_shape)


def low_resolution(dataset, factor: int):
    """The same :class:`dgm.data.Dataset` with ``y`` = its low-resolution images (N, C, H/f, W/f).

    ``dgm.train`` and ``dgm.evaluate`` pass ``y`` as the context of a conditional model, so a model built
    with ``context_shape=[C, H/f, W/f]`` trains on it unchanged. ``num_classes`` is cleared (y holds images,
    not labels). A dataset with a random transform (``mnist-dynamic``) keeps it: h is then the block mean
    of the grey levels, i.e. the expected fraction of ones of each binarisation.
    """
    x = _images_of(dataset)
    low = downsample(x, factor, dataset.support)
    return replace(dataset, y=low.contiguous(), num_classes=None)


def _check_model(model) -> tuple[int, int, int]:
    shape = getattr(model, "context_shape", None)
    if shape is None:
        raise DataError(
            f"{getattr(model, 'name', '') or type(model).__name__} is not conditioned on an image: "
            "build a pixelcnn / gated-pixelcnn with context_shape=[C, h, w]"
        )
    return tuple(shape)


def _check_low(model, low) -> Tensor:
    shape = _check_model(model)
    if not isinstance(low, Tensor):
        raise DataError(f"low-resolution images must be a torch.Tensor, got {type(low).__name__}")
    if low.dim() != 4 or tuple(low.shape[1:]) != shape:
        raise DataError(
            f"low-resolution images have shape {tuple(low.shape)}; the model is conditioned on "
            f"(N, {', '.join(map(str, shape))}) (context_shape={list(shape)})"
        )
    return low


@torch.no_grad()
def super_resolve(
    model, low: Tensor, num_samples: int, generator: torch.Generator | None = None, batch_size: int = 1024
) -> Tensor:
    """``num_samples`` draws x ~ p(x | h) for each low-resolution image h: (N, S, *event_shape).

    Draws are made ``batch_size`` images at a time (the sampler is sequential over pixels, so larger
    batches amortise its passes); a seeded ``generator`` makes them reproducible.
    """
    low = _check_low(model, low)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise DataError(f"num_samples must be a positive int, got {num_samples!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch_size must be a positive int, got {batch_size!r}")
    n = len(low)
    repeated = low.to(model.device).repeat_interleave(num_samples, 0)
    chunks = [model.sample(len(part), part, generator=generator) for part in repeated.split(batch_size)] or [
        torch.zeros(0, *model.event_shape, device=model.device)
    ]
    return torch.cat(chunks).reshape(n, num_samples, *model.event_shape)


def consistency_error(
    samples: Tensor, low: Tensor, factor: int, support="binary", per_example: bool = False
) -> float | Tensor:
    """Mean |downsample(sample) − h| over the low-resolution values.

    ``samples``: (N, S, C, H, W) (S samples per image) or (N, C, H, W); ``low``: (N, C, H/f, W/f).
    Returns the mean over everything as a float, or with ``per_example`` the mean over each image's
    samples and values, (N,). For binary images a value is a difference of fractions of ones per block.
    """
    if not isinstance(samples, Tensor) or not isinstance(low, Tensor):
        raise DataError("samples and low-resolution images must be torch.Tensors")
    if samples.dim() == 4:
        samples = samples[:, None]
    if samples.dim() != 5:
        raise DataError(
            f"samples must have shape (N, S, C, H, W) or (N, C, H, W), got {tuple(samples.shape)}"
        )
    down = downsample(samples, factor, support)
    if low.dim() != 4 or tuple(low.shape) != (len(samples), *down.shape[2:]):
        raise DataError(
            f"low-resolution images have shape {tuple(low.shape)}; samples {tuple(samples.shape)} "
            f"downsampled by {factor} need ({len(samples)}, {', '.join(map(str, down.shape[2:]))})"
        )
    err = (down - low.to(down.device, down.dtype)[:, None]).abs().flatten(2).mean(2).mean(1)
    return err if per_example else float(err.mean()) if len(err) else float("nan")


@dataclass
class SuperResolution:
    """Super-resolutions of a batch and how consistent and likely they are.

    Attributes:
        low: (N, C, h, w) the conditioning images, in [0, 1].
        samples: (N, S, C, H, W) draws from p(x | h).
        factor: the downsampling factor f (H = f·h).
        consistency: mean |downsample(sample) − h| over all samples and values.
        consistency_per_example: (N,) the same per conditioning image.
        log_prob: (N,) log p(x | h) of the true images in nats, when they were given (else None).
        exact: whether ``log_prob`` is exact (True for the PixelCNNs).
        seconds: wall time of the sampling.
    """

    low: Tensor
    samples: Tensor
    factor: int
    consistency: float
    consistency_per_example: Tensor
    log_prob: Tensor | None = None
    exact: bool = True
    seconds: float = float("nan")

    def describe(self) -> str:
        n, s, c, H, W = self.samples.shape
        h, w = self.low.shape[-2:]
        text = (
            f"{s} sample(s) for each of {n} image(s), {c}x{h}x{w} -> {c}x{H}x{W} (factor {self.factor}): "
            f"consistency error {self.consistency:.4f} (mean |downsample(sample) - input|)"
        )
        if self.log_prob is not None and len(self.log_prob):
            nll = -self.log_prob.double()
            se = nll.std().item() / math.sqrt(len(nll)) if len(nll) > 1 else float("nan")
            text += f"; conditional NLL {'=' if self.exact else '≈'} {nll.mean().item():.2f} ± {se:.2f} nats"
        return text + f"; sampled in {self.seconds:.1f} s"


def evaluate_super_resolution(
    model,
    x: Tensor,
    factor: int,
    num_samples: int = 4,
    generator: torch.Generator | None = None,
    low: Tensor | None = None,
) -> SuperResolution:
    """Downsample ``x`` by ``factor`` (or take the given ``low``), draw super-resolutions, and measure them:
    the consistency error of the samples and the conditional log-likelihood log p(x | h) of ``x``."""
    _check_model(model)
    x = model.validate(x, "images")
    support = str(model.support)
    if low is None:
        low = downsample(x, factor, support)
        if tuple(low.shape[1:]) != tuple(model.context_shape):
            raise DataError(
                f"factor {factor} turns {tuple(x.shape[1:])} images into {tuple(low.shape[1:])}, but the "
                f"model is conditioned on {tuple(model.context_shape)} (context_shape)"
            )
    low = _check_low(model, low).to(model.device)
    if len(low) != len(x):
        raise DataError(f"{len(low)} low-resolution images for {len(x)} images")
    t0 = time.perf_counter()
    samples = super_resolve(model, low, num_samples, generator)
    seconds = time.perf_counter() - t0
    per = consistency_error(samples, low, factor, support, per_example=True)
    with torch.no_grad():
        lp = model.log_prob(x, low).detach()
    return SuperResolution(
        low=low,
        samples=samples,
        factor=factor,
        consistency=float(per.mean()) if len(per) else float("nan"),
        consistency_per_example=per,
        log_prob=lp,
        exact=bool(model.exact),
        seconds=seconds,
    )


def superres_grid(
    low: Tensor,
    samples: Tensor,
    factor: int,
    path: str | Path,
    truth: Tensor | None = None,
    support="binary",
    title: str | None = None,
) -> Path:
    """A PNG with one column per image; rows: the input h upsampled, the S samples, the true image."""
    from dgm.viz import image_grid

    scale = _scale_of(support)
    n = len(samples)
    rows = [upsample(low.float().cpu(), factor) * scale]
    rows += [samples[:, j].float().cpu() for j in range(samples.shape[1])]
    if truth is not None:
        rows.append(truth.reshape(samples[:, 0].shape).float().cpu())
    grid = torch.cat(rows)
    return image_grid(grid, path, value_range=(0, scale), nrow=n, title=title)


__all__ = [
    "SuperResolution",
    "consistency_error",
    "downsample",
    "evaluate_super_resolution",
    "low_resolution",
    "super_resolve",
    "superres_grid",
    "upsample",
]
