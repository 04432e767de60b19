"""Adversarial examples, their detection and their purification with a PixelCNN: PixelDefend.

Song, Kim, Nowozin, Ermon & Kushman (2018), "PixelDefend: Leveraging Generative Models to Understand and
Defend against Adversarial Examples" (ICLR). Small L∞ perturbations that fool a classifier move images
off the data distribution, into regions of low likelihood under a PixelCNN trained on that distribution:

Detection (their §4)
    score each input by its bits/dim under the PixelCNN and compare it with the training images' scores:
    the empirical p-value p(x) = (1 + #{training images scoring at least as badly as x}) / (N + 1) is the
    chance that an image of the training distribution looks at least as unlikely as x. p-values of
    in-distribution inputs are uniform on (0, 1]; small ones flag inputs that are off the distribution.
Purification (their Algorithm 1)
    for each value x_i in raster order, take the PixelCNN's conditional p(x_i | x'_<i) given the values
    already purified, keep only the integer levels within ε of the input value, [x_i − ε·(k−1),
    x_i + ε·(k−1)] (ε on the [0, 1] scale; k = 256 levels), and set x'_i to the most probable of them
    (greedy) or to a draw from the restricted conditional. The result stays in the ε-ball of the input and
    moves it towards high likelihood. It is then classified by the unchanged classifier.

The attacks are the classical ones, in L∞ on [0, 1] images: FGSM (Goodfellow, Shlens & Szegedy 2015,
"Explaining and Harnessing Adversarial Examples") and PGD with a random start (Madry, Makelov, Schmidt,
Tsipras & Vladu 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks"). They attack the
classifier alone (non-adaptive): Athalye, Carlini & Wagner (2018), "Obfuscated Gradients Give a False
Sense of Security", broke PixelDefend with attacks that differentiate through the purifier (BPDA), so the
accuracy after purification measured here is an upper bound on its robustness, not a guarantee.

Conventions: the classifier sees images in [0, 1]; the PixelCNN sees the integer levels 0..k−1 (its
support ``categorical(k)``). :func:`quantize` maps an adversarial [0, 1] image back to integer levels
inside the ε-ball, as PixelDefend does.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical

from dgm.core.distributions import sample as draw
from dgm.core.errors import CheckpointError, ConfigError, DataError
from dgm.training import optim

ATTACKS = ("fgsm", "pgd")
CLASSIFIER_CONFIG = "classifier.json"
CLASSIFIER_WEIGHTS = "classifier.safetensors"


# ---------------------------------------------------------------------------- checks
def _check_eps(eps, what: str = "eps") -> float:
    if isinstance(eps, bool) or not isinstance(eps, int | float):
        raise DataError(f"{what} must be a number in [0, 1] (the [0, 1] pixel scale), got {eps!r}")
    eps = float(eps)
    if not math.isfinite(eps) or not 0 <= eps <= 1:
        raise DataError(f"{what} must be a number in [0, 1] (the [0, 1] pixel scale), got {eps!r}")
    return eps


def _check_unit(x, what: str, image_shape=None) -> Tensor:
    """A float batch of images in [0, 1]: (N, C, H, W), or (N, *image_shape) when given."""
    if not isinstance(x, Tensor):
        raise DataError(f"{what} must be a torch.Tensor of images in [0, 1], got {type(x).__name__}")
    if not x.is_floating_point():
        x = x.float()
    if image_shape is not None and tuple(x.shape[1:]) != tuple(image_shape):
        raise DataError(
            f"{what} has shape {tuple(x.shape)}; expected (N, {', '.join(map(str, image_shape))})"
        )
    if image_shape is None and x.dim() != 4:
        raise DataError(f"{what} must have shape (N, C, H, W), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise DataError(f"{what} contains NaN or inf")
    if len(x) and (x.min() < 0 or x.max() > 1):
        raise DataError(
            f"{what} must lie in [0, 1] (divide 8-bit images by 255), got {x.min().item():.4g}.."
            f"{x.max().item():.4g}"
        )
    return x


def _check_labels(y, n: int, num_classes: int | None = None) -> Tensor:
    if not isinstance(y, Tensor) or y.dim() != 1 or len(y) != n:
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise DataError(f"labels must be a tensor of shape ({n},), got {shape}")
    if y.is_floating_point() and (~torch.isfinite(y) | (y != y.round())).any():
        raise DataError("labels must be integers")
    y = y.long()
    if len(y) and (y.min() < 0 or (num_classes is not None and y.max() >= num_classes)):
        raise DataError(f"labels must lie in 0..{(num_classes or 1) - 1}, got {int(y.min())}..{int(y.max())}")
    return y


@contextlib.contextmanager
def _evaluating(module: nn.Module, grad: bool = False):
    was_training = module.training
    module.eval()
    try:
        with torch.set_grad_enabled(grad):
            yield
    finally:
        module.train(was_training)


def _device(module: nn.Module) -> torch.device:
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")


# ---------------------------------------------------------------------------- classifier
class SmallCNN(nn.Module):
    """A small convolutional classifier of [0, 1] images: ``len(channels)`` blocks of 3×3 convolution,
    ReLU and 2×2 max-pooling, then one hidden fully connected layer.

    The defaults (1×28×28 input, channels 32, 64, 64, hidden 64) have about 94k parameters (MNIST test
    accuracy: ``benchmarks/purification.py``). The arguments are kept in ``config`` (JSON), which
    :func:`save_classifier` writes next to the weights.
    """

    def __init__(
        self,
        image_shape=(1, 28, 28),
        num_classes: int = 10,
        channels=(32, 64, 64),
        hidden: int = 64,
    ):
        super().__init__()
        try:
            shape = tuple(int(d) for d in image_shape)
            chans = [int(c) for c in channels]
        except (TypeError, ValueError):
            raise ConfigError(
                f"image_shape and channels must be lists of ints, got {image_shape!r}, {channels!r}"
            ) from None
        if len(shape) != 3 or min(shape) < 1:
            raise ConfigError(f"image_shape must be (C, H, W), got {image_shape!r}")
        if not chans or min(chans) < 1 or int(hidden) < 1 or int(num_classes) < 2:
            raise ConfigError("channels and hidden must be positive and num_classes at least 2")
        self.image_shape = shape
        self.num_classes = int(num_classes)
        self.config = {
            "image_shape": list(shape),
            "num_classes": self.num_classes,
            "channels": chans,
            "hidden": int(hidden),
        }
        layers: list[nn.Module] = []
        c, h, w = shape
        for out in chans:
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU()]
            if min(h, w) >= 2:  # pool while the map is larger than one pixel
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * h * w, int(hidden)),
            nn.ReLU(),
            nn.Linear(int(hidden), self.num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, num_classes) of images (N, C, H, W) in [0, 1] (not checked here: attacks call this)."""
        return self.classifier(self.features(x))


def _classifier_arrays(data) -> tuple[Tensor, Tensor]:
    """(x in [0, 1], labels) from a labelled Dataset (raw values: scaled by k−1) or an (x, y) pair."""
    if isinstance(data, tuple) and len(data) == 2:
        x, y = data
        return _check_unit(x, "classifier training images"), y
    x, y = getattr(data, "x", None), getattr(data, "y", None)
    if not isinstance(x, Tensor) or y is None:
        raise DataError("classifier data must be a labelled Dataset or an (x, y) pair of tensors")
    return _scale_to_unit(x, getattr(data, "support", "real"), "classifier training images"), y


def _scale_to_unit(x: Tensor, support, what: str) -> Tensor:
    from dgm.core.support import Support

    sup = Support.parse(str(support))
    x = x.float()
    if sup.kind == "categorical":
        x = x / (sup.num_categories - 1)
    if x.dim() == 2:  # flat 28×28 data
        side = math.isqrt(x.shape[1])
        if side * side == x.shape[1]:
            x = x.reshape(len(x), 1, side, side)
    return _check_unit(x, what)


def train_classifier(
    model: nn.Module,
    data,
    *,
    epochs: int = 5,
    max_minutes: float | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict:
    """Train a classifier with Adam on cross-entropy; returns {"steps", "epochs", "seconds", "loss"}.

    ``data``: a labelled Dataset (raw values; ``categorical(k)`` images are divided by k−1, so
    ``dgm.data.load("mnist", "train")`` works as it is) or an ``(x, y)`` pair with x already in [0, 1].
    Training stops after ``epochs`` or ``max_minutes`` of wall time, whichever comes first.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be a positive int, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    if not lr > 0:
        raise ConfigError(f"lr must be positive, got {lr!r}")
    x, y = _classifier_arrays(data)
    y = _check_labels(y, len(x), getattr(model, "num_classes", None))
    if device is not None:
        model.to(device)
    dev = _device(model)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = optim.make("adam", model.parameters(), lr)
    start, steps, loss_value, done = time.perf_counter(), 0, float("nan"), 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs * math.ceil(len(x) / batch_size), desc="classifier", leave=False)
    model.train()
    out_of_time = False
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            xb, yb = x[idx].to(dev), y[idx].to(dev)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            loss_value = loss.item()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}")
            if max_minutes is not None and time.perf_counter() - start > 60 * max_minutes:
                out_of_time = True
                break
        done += 1
        if out_of_time:
            break
    if bar is not None:
        bar.close()
    opt.zero_grad(set_to_none=True)
    model.eval()
    return {"steps": steps, "epochs": done, "seconds": time.perf_counter() - start, "loss": loss_value}


@torch.no_grad()
def predict(classifier: nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    """Predicted labels (N,) of images in [0, 1]."""
    x = _check_unit(x, "x", getattr(classifier, "image_shape", None))
    dev = _device(classifier)
    with _evaluating(classifier):
        out = [
            classifier(x[i : i + batch_size].to(dev)).argmax(1).cpu() for i in range(0, len(x), batch_size)
        ]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy(classifier: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    """Fraction of images (in [0, 1]) classified correctly."""
    pred = predict(classifier, x, batch_size)
    y = _check_labels(y, len(pred))
    if len(y) == 0:
        raise DataError("accuracy of an empty batch")
    return float((pred == y.cpu()).double().mean())


def save_classifier(model: SmallCNN, directory: str | Path) -> Path:
    """Write ``classifier.json`` (the constructor arguments) and ``classifier.safetensors`` (the state
    dict) into ``directory``, atomically; no pickle."""
    from dgm.core.checkpoint import save_tensors, write_json

    directory = Path(directory)
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise ConfigError(f"{type(model).__name__} has no config to save; save a SmallCNN")
    write_json(directory / CLASSIFIER_CONFIG, {"classifier": "small-cnn", **config})
    save_tensors(directory / CLASSIFIER_WEIGHTS, model.state_dict(), {"classifier": "small-cnn"})
    return directory


def load_classifier(directory: str | Path, device: str | torch.device | None = None) -> SmallCNN:
    """Rebuild a :class:`SmallCNN` written by :func:`save_classifier` (in eval mode)."""
    from dgm.core.checkpoint import load_state_into, load_tensors, read_json

    directory = Path(directory)
    if directory.is_file():
        directory = directory.parent
    config = read_json(directory / CLASSIFIER_CONFIG)
    if not isinstance(config, dict) or config.pop("classifier", None) != "small-cnn":
        raise CheckpointError(f"{directory / CLASSIFIER_CONFIG} does not describe a small-cnn classifier")
    try:
        model = SmallCNN(**config)
    except TypeError as e:
        raise CheckpointError(f"{directory / CLASSIFIER_CONFIG}: bad classifier options ({e})") from None
    tensors, _ = load_tensors(directory / CLASSIFIER_WEIGHTS)
    load_state_into(model, tensors, directory / CLASSIFIER_WEIGHTS)
    model.eval()
    return model.to(device) if device is not None else model


# ---------------------------------------------------------------------------- attacks
def _input_gradient(classifier: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """∇_x of the summed cross-entropy (one example's gradient does not depend on the others)."""
    with _evaluating(classifier, grad=True):
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(classifier(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def _attack_inputs(classifier, x, y, eps) -> tuple[Tensor, Tensor, float]:
    eps = _check_eps(eps)
    x = _check_unit(x, "x", getattr(classifier, "image_shape", None))
    y = _check_labels(y, len(x), getattr(classifier, "num_classes", None))
    dev = _device(classifier)
    return x.to(dev), y.to(dev), eps


def _project(x_adv: Tensor, x: Tensor, eps: float) -> Tensor:
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp(0, 1)


def fgsm(classifier: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
    """Fast gradient sign method: x + ε·sign(∇_x loss), clamped to [0, 1] (Goodfellow et al. 2015).

    ``x``: (N, C, H, W) images in [0, 1]; ``y``: true labels (N,); ``eps`` in [0, 1]. Returns images in
    [0, 1] within ε of x in L∞, on the classifier's device.
    """
    x, y, eps = _attack_inputs(classifier, x, y, eps)
    if len(x) == 0 or eps == 0:
        return x.clone()
    return _project(x + eps * _input_gradient(classifier, x, y).sign(), x, eps).detach()


def pgd(
    classifier: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    steps: int = 40,
    step_size: float | None = None,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Projected gradient descent on the loss in the L∞ ball (Madry et al. 2018).

    From x (or a uniform random point of the ball when ``random_start``), ``steps`` signed-gradient steps
    of ``step_size`` (default 2.5·ε/steps, Madry et al.'s choice), each followed by the projection onto
    the ε-ball around x and onto [0, 1]. Returns images within ε of x, in [0, 1].
    """
    x, y, eps = _attack_inputs(classifier, x, y, eps)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise DataError(f"steps must be a positive int, got {steps!r}")
    step = 2.5 * eps / steps if step_size is None else float(step_size)
    if not math.isfinite(step) or step < 0:
        raise DataError(f"step_size must be a non-negative number, got {step_size!r}")
    if len(x) == 0 or eps == 0:
        return x.clone()
    x_adv = x.clone()
    if random_start:
        gen_device = generator.device if generator is not None else x.device
        noise = torch.rand(x.shape, generator=generator, device=gen_device).to(x.device)
        x_adv = _project(x + eps * (2 * noise - 1), x, eps)
    for _ in range(steps):
        x_adv = _project(x_adv + step * _input_gradient(classifier, x_adv, y).sign(), x, eps)
    return x_adv.detach()


def attack(classifier: nn.Module, x: Tensor, y: Tensor, eps: float, method: str = "pgd", **options) -> Tensor:
    """:func:`fgsm` or :func:`pgd` by name."""
    if method == "fgsm":
        if options:
            raise ConfigError(f"fgsm takes no options, got {', '.join(sorted(options))}")
        return fgsm(classifier, x, y, eps)
    if method == "pgd":
        return pgd(classifier, x, y, eps, **options)
    raise ConfigError(f"unknown attack {method!r}; attacks are: {', '.join(ATTACKS)}")


def _radius(eps: float, levels: int) -> int:
    """Integer levels within ε (on the [0, 1] scale) of a level; the 1e-9 absorbs ε·255 rounding."""
    return math.floor(eps * (levels - 1) + 1e-9)


def quantize(x_adv: Tensor, x: Tensor, eps: float, levels: int = 256) -> Tensor:
    """The nearest integer levels 0..levels−1 of ``x_adv`` (in [0, 1]) that stay within ε of ``x``.

    Both are [0, 1] images; the result holds integer levels (float32), as a ``categorical(levels)``
    model expects: divide by levels−1 to classify it. Rounding alone could leave the ball by half a level,
    so each value is clipped to [⌈(x − ε)(levels−1)⌉, ⌊(x + ε)(levels−1)⌋]. For x on the grid of levels
    (8-bit images) that interval always holds a level; for x off it and ε under half a level it may hold
    none, and the level just below the ball is returned.
    """
    eps = _check_eps(eps)
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise DataError(f"levels must be an int >= 2, got {levels!r}")
    x_adv = _check_unit(x_adv, "x_adv")
    x = _check_unit(x, "x")
    if x_adv.shape != x.shape:
        raise DataError(f"x_adv has shape {tuple(x_adv.shape)} but x has {tuple(x.shape)}")
    x = x.to(x_adv.device)
    scale = levels - 1
    lo = torch.ceil((x - eps) * scale - 1e-6).clamp(min=0)
    hi = torch.floor((x + eps) * scale + 1e-6).clamp(max=scale)
    return torch.minimum(torch.maximum(torch.round(x_adv * scale), lo), hi).float()


# ---------------------------------------------------------------------------- detection
def bits_per_dim(model, x: Tensor, batch_size: int = 500) -> Tensor:
    """−log₂ p(x) / D of each example under ``model`` (its exact ``log_prob``), float64 (N,) on the CPU.

    Class-conditional models are marginalised over a uniform class prior (an attacked input has no label).
    """
    from dgm.tasks.anomaly import bits_per_dim_scores

    return bits_per_dim_scores(model, model.validate(x, "x"), batch_size)


def p_values(train_scores, scores) -> Tensor:
    """Empirical p-values of ``scores`` (higher = less likely, e.g. bits/dim) against ``train_scores``.

    p(s) = (1 + #{i : train_i ≥ s}) / (N + 1) (Song et al. 2018, §4, with bits/dim for the PixelCNN's
    probability, so "at least as unlikely" is "at least as many bits"): in (0, 1], 1/(N+1) for a score
    above every training score; uniform over {1/(N+1), …, 1} for a score drawn like the training ones.
    """
    train = torch.as_tensor(train_scores, dtype=torch.float64).flatten().cpu()
    s = torch.as_tensor(scores, dtype=torch.float64).flatten().cpu()
    if len(train) == 0:
        raise DataError("p-values need at least one training score")
    if not torch.isfinite(train).all() or not torch.isfinite(s).all():
        raise DataError("scores contain NaN or inf")
    ordered = torch.sort(train).values
    # #{train ≥ s} = N − #{train < s}; searchsorted(left) counts the training scores below s.
    at_least = len(ordered) - torch.searchsorted(ordered, s, right=False)
    return (1 + at_least).double() / (len(ordered) + 1)


def detection_metrics(clean_scores, attacked_scores) -> dict[str, float]:
    """AUROC, AUPR and FPR at 95% TPR of telling attacked (positive) from clean inputs by a score oriented
    high = anomalous (bits/dim, or 1 − p-value); see :func:`dgm.tasks.anomaly.ood_metrics`."""
    from dgm.tasks.anomaly import ood_metrics

    return ood_metrics(clean_scores, attacked_scores)


def detection_auroc(clean_scores, attacked_scores) -> float:
    """AUROC of :func:`detection_metrics` (0.5 = no better than chance, 1 = perfect)."""
    return detection_metrics(clean_scores, attacked_scores)["auroc"]


# ---------------------------------------------------------------------------- purification
def _raster_channel_last(shape) -> Tensor:
    C, H, W = shape
    return torch.arange(C * H * W).reshape(C, H, W).permute(1, 2, 0).reshape(-1)


def _conditionals(model):
    """(ordering, logits(x_flat, ctx, d) → (n, k)) for a model with exact per-value conditionals.

    The PixelCNN family (``logits`` + ``receptive_rows``) runs each pass on the rows pixel d can see only,
    as its own sampler does; other autoregressive models run a full pass. DataError when the model offers
    no single chain of exact categorical conditionals.
    """
    name = getattr(model, "name", "") or type(model).__name__
    support = getattr(model, "support", None)
    if support is None or not callable(getattr(model, "log_prob", None)):
        raise DataError(f"purify needs a dgm generative model, got {type(model).__name__}")
    if support.kind != "categorical":
        raise DataError(
            f"purify needs a model of integer grey levels (support categorical(k), e.g. 256 for 8-bit "
            f"images); {name} has support {support}"
        )
    k = support.num_categories
    if callable(getattr(model, "logits", None)) and hasattr(model, "receptive_rows"):
        if len(model.event_shape) != 3:
            raise DataError(f"{name} has event shape {tuple(model.event_shape)}, expected (C, H, W)")
        C, H, W = model.event_shape
        reach = int(model.receptive_rows)
        banded = all(callable(getattr(model, a, None)) for a in ("_features", "_scale", "_head"))

        def pixel_logits(x: Tensor, context, d: int) -> Tensor:
            ch, r, c = d // (H * W), d // W % H, d % W
            img = x.reshape(len(x), C, H, W)
            if not banded:
                return model.logits(img, context)[:, ch, r, c]
            # Row r's conditionals see rows r−reach..r only (none below): a pass over that band gives
            # exactly the full image's logits at row r (the same crop as the model's sampler).
            top = max(0, r - reach)
            if callable(getattr(model, "context_band", None)):  # models that also take an image context
                ctx = model.context_band(context, len(x), top, r + 1)
            else:
                ctx = model.class_labels(context, len(x))
            h = model._features(model._scale(img[:, :, top : r + 1]), ctx)[:, :, -1:]
            return model._head(h)[:, ch, 0, c]

        return _raster_channel_last(model.event_shape), pixel_logits
    from dgm.tasks.imputation import _Autoregressive, _Unavailable

    try:
        ar = _Autoregressive(model)
    except _Unavailable as e:
        raise DataError(
            f"purify needs exact conditionals p(x_i | x_<i) in a fixed order: {e} "
            "(use an autoregressive model such as pixelcnn or gated-pixelcnn)"
        ) from None
    if len(ar.orderings) != 1:
        raise DataError(
            f"{name} is a mixture of {len(ar.orderings)} orderings: it has no single chain of exact "
            "conditionals to purify with (build it with num_masks=1)"
        )

    def value_logits(x: Tensor, context, d: int) -> Tensor:
        dist = ar.conditionals(x, context)
        if not isinstance(dist, Categorical):
            raise DataError(f"{name}'s conditionals are {type(dist).__name__}, not categorical")
        return dist.logits[:, d].reshape(len(x), k)

    return ar.orderings[0], value_logits


def purify(
    model,
    x: Tensor,
    eps: float,
    *,
    context=None,
    greedy: bool = True,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> Tensor:
    """PixelDefend purification (Song et al. 2018, Algorithm 1) of integer images ``x``.

    For each value i in the model's order (raster order for the PixelCNN family: rows, columns, then
    channels), with x'_<i the values already purified: restrict p(x_i | x'_<i) to the levels v with
    |v − x_i| ≤ ε·(k−1), and set x'_i to its most probable level (``greedy``; ties go to the lowest
    level) or to a draw from it (``greedy=False``, seeded by ``generator``). Every value moves by at most
    ⌊ε·(k−1)⌋ levels; ε = 0 returns x; ε = 1 with ``greedy`` is greedy decoding of the model (x is then
    ignored).

    Args:
        model: a model with exact per-value categorical conditionals: ``pixelcnn``, ``gated-pixelcnn``,
            ``pixelrnn`` with ``support="categorical(k)"`` (and other single-ordering autoregressive
            models). A one-line DataError names what is missing otherwise.
        x: integer levels (N, *event_shape) in 0..k−1 (e.g. :func:`quantize` of an attacked image).
        eps: the defence radius on the [0, 1] scale, in [0, 1].
        context: for a conditional model, its context per image: class labels (N,) (or one int), or
            conditioning images (N, ...) for a model built with an image context.
        batch_size: images purified together; progress: a progress bar over the values.

    Returns:
        float32 integer levels of the same shape, on the model's device.

    Cost: D sequential steps per batch (one per value; C·H·W for images). For the PixelCNN family a
    step runs the network on the ``receptive_rows + 1`` rows that value can see, so a step costs
    O(receptive field), not O(image), and only that row reaches the output layer: about
    (receptive_rows + 1)/H of a forward pass per value, i.e. D·(receptive_rows + 1)/H full forward
    passes per image. Other models run one full forward pass per value.
    """
    order, logits_at = _conditionals(model)
    eps = _check_eps(eps)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch_size must be a positive int, got {batch_size!r}")
    x = model.validate(x, "x")
    n, D = len(x), model.num_dims
    k = model.support.num_categories
    radius = _radius(eps, k)
    out = torch.empty(n, D, device=x.device)
    if n == 0:
        return out.reshape(x.shape)
    ctx_all = None
    if context is not None:
        if isinstance(context, int) and not isinstance(context, bool):
            context = torch.full((n,), context, dtype=torch.long)
        if not isinstance(context, Tensor) or len(context) != n:
            raise DataError(f"context must be an int or a tensor with one entry per image ({n})")
        ctx_all = context.to(x.device)
    levels = torch.arange(k, device=x.device)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=math.ceil(n / batch_size) * D, desc="purify", leave=False)
    with _evaluating(model):
        for start in range(0, n, batch_size):
            xb = x[start : start + batch_size].reshape(-1, D).float()
            cb = None if ctx_all is None else ctx_all[start : start + batch_size]
            cur = xb.clone()
            lo, hi = (xb - radius).clamp(min=0), (xb + radius).clamp(max=k - 1)
            for d in order.tolist():
                logits = logits_at(cur, cb, d).float()
                allowed = (levels >= lo[:, d, None]) & (levels <= hi[:, d, None])
                logits = logits.masked_fill(~allowed, -math.inf)
                if greedy:
                    value = logits.argmax(1)
                else:
                    value = draw(Categorical(logits=logits, validate_args=False), (), generator)
                cur[:, d] = value.to(cur.device, cur.dtype)
                if bar is not None:
                    bar.update(1)
            out[start : start + len(xb)] = cur
    if bar is not None:
        bar.close()
    return out.reshape(x.shape)


# ---------------------------------------------------------------------------- one call
@dataclass
class PurificationReport:
    """Clean / attacked / purified accuracy and detection figures per (attack, ε), for one classifier and
    one density model; ``table()`` prints them side by side.

    Attributes:
        rows: one dict per (attack, ε) with keys ``attack``, ``eps``, ``eps_defend``, ``clean_acc``,
            ``attacked_acc``, ``purified_acc`` (purified attacked images), ``purified_clean_acc`` (clean
            images purified with the same ε_defend: the defence's cost), ``bpd_clean``, ``bpd_attacked``
            (mean bits/dim), ``bpd_purified``, ``auroc`` (bits/dim, attacked positive), ``pvalue_clean`` /
            ``pvalue_attacked`` (median p-values, when training scores were given), ``purify_seconds``
            (per image).
        num_examples: images attacked.
        images: per (attack, ε): (attacked, purified) integer images, for pictures.
        notes: how the figures were made.
    """

    rows: list[dict]
    num_examples: int
    clean_accuracy: float
    images: dict = field(default_factory=dict, repr=False)
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        head = (
            f"{'attack':<7}{'eps':>6}{'clean':>8}{'attacked':>10}{'purified':>10}{'pur.clean':>11}"
            f"{'bpd clean':>11}{'bpd adv':>9}{'AUROC':>8}"
        )
        with_p = any(r.get("pvalue_attacked") is not None for r in self.rows)
        if with_p:
            head += f"{'p clean':>9}{'p adv':>9}"
        lines = [head]
        for r in self.rows:
            line = (
                f"{r['attack']:<7}{r['eps']:>6.2f}{100 * r['clean_acc']:>7.1f}%"
                f"{100 * r['attacked_acc']:>9.1f}%"
                f"{100 * r['purified_acc']:>9.1f}%{100 * r['purified_clean_acc']:>10.1f}%"
                f"{r['bpd_clean']:>11.3f}{r['bpd_attacked']:>9.3f}{r['auroc']:>8.3f}"
            )
            if with_p:
                pc, pa = r.get("pvalue_clean"), r.get("pvalue_attacked")
                line += f"{pc if pc is not None else float('nan'):>9.3f}"
                line += f"{pa if pa is not None else float('nan'):>9.3f}"
            lines.append(line)
        return "\n".join(lines)


def defend(
    classifier: nn.Module,
    model,
    x: Tensor,
    y: Tensor,
    *,
    attacks=ATTACKS,
    eps=(0.1, 0.2, 0.3),
    eps_defend: float | None = None,
    train_scores: Tensor | None = None,
    pgd_steps: int = 40,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> PurificationReport:
    """Attack ``classifier`` on integer images ``x`` (levels of ``model``'s support) with labels ``y``,
    detect the attacks by bits/dim and purify them with ``model``; everything side by side.

    Each attack is run on x/(k−1) in [0, 1] and quantised back to levels inside the ε-ball; the attacked
    accuracy is that of the quantised images (what the defence receives). Purification uses ``eps_defend``
    (default: the attack's ε). ``train_scores`` (bits/dim of training images) adds median p-values.
    Attacks are non-adaptive: they never see the purifier (see the module docstring).
    """
    x = model.validate(x, "x")
    k = model.support.num_categories
    if model.support.kind != "categorical":
        raise DataError(f"defend needs integer images (categorical(k) support), got {model.support}")
    for a in attacks:
        if a not in ATTACKS:
            raise ConfigError(f"unknown attack {a!r}; attacks are: {', '.join(ATTACKS)}")
    eps_list = [_check_eps(e) for e in eps]
    if eps_defend is not None:
        eps_defend = _check_eps(eps_defend, "eps_defend")
    dev = _device(classifier)
    unit = (x.float() / (k - 1)).to(dev)
    y = _check_labels(y, len(x)).to(dev)
    clean_acc = accuracy(classifier, unit, y)
    bpd_clean = bits_per_dim(model, x, batch_size)
    p_clean = None if train_scores is None else float(p_values(train_scores, bpd_clean).median())
    purified_clean: dict[float, float] = {}
    rows, images = [], {}
    for a in attacks:
        for e in eps_list:
            e_def = e if eps_defend is None else eps_defend
            opts = {"steps": pgd_steps, "generator": generator} if a == "pgd" else {}
            adv = quantize(attack(classifier, unit, y, e, a, **opts), unit, e, k).to(x.device)
            bpd_adv = bits_per_dim(model, adv, batch_size)
            t0 = time.perf_counter()
            pur = purify(model, adv, e_def, batch_size=batch_size, progress=progress)
            seconds = (time.perf_counter() - t0) / max(len(x), 1)
            if e_def not in purified_clean:
                clean_pur = purify(model, x, e_def, batch_size=batch_size, progress=progress)
                purified_clean[e_def] = accuracy(classifier, (clean_pur / (k - 1)).to(dev), y)
            images[(a, e)] = (adv.cpu(), pur.cpu())
            rows.append(
                {
                    "attack": a,
                    "eps": e,
                    "eps_defend": e_def,
                    "clean_acc": clean_acc,
                    "attacked_acc": accuracy(classifier, (adv / (k - 1)).to(dev), y),
                    "purified_acc": accuracy(classifier, (pur / (k - 1)).to(dev), y),
                    "purified_clean_acc": purified_clean[e_def],
                    "bpd_clean": float(bpd_clean.mean()),
                    "bpd_attacked": float(bpd_adv.mean()),
                    "bpd_purified": float(bits_per_dim(model, pur, batch_size).mean()),
                    "auroc": detection_auroc(bpd_clean, bpd_adv),
                    "pvalue_clean": p_clean,
                    "pvalue_attacked": (
                        None if train_scores is None else float(p_values(train_scores, bpd_adv).median())
                    ),
                    "purify_seconds": seconds,
                }
            )
    notes = [
        "non-adaptive attacks on the classifier alone (Athalye et al. 2018 break PixelDefend adaptively)",
        f"attacked images quantised to {k} levels inside the ε-ball before classification and purification",
    ]
    return PurificationReport(rows, len(x), clean_acc, images, notes)
