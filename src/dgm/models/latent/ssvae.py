"""Semi-supervised learning with a deep generative model: Kingma et al.'s M2.

Kingma, Rezende, Mohamed & Welling (2014), "Semi-supervised Learning with Deep Generative Models",
NeurIPS. The generative model is p(y) p(z) p(x | y, z) with p(y) uniform over C classes and p(z) = N(0, I);
the class is a latent variable that is observed for some examples. Inference has a classifier q(y | x) and
a Gaussian q(z | x, y). For a labelled example the bound is (their eq. 6)

    log p(x, y) ≥ E_q(z|x,y)[log p(x | y, z) + log p(y) + log p(z) − log q(z | x, y)] = −L(x, y),

and for an unlabelled one y is summed out under q(y | x) (eq. 7):

    log p(x) ≥ Σ_y q(y | x) (−L(x, y)) + H(q(y | x)) = −U(x).

The classifier only enters U, so the objective adds its log-likelihood on the labelled examples with
weight α (eq. 9): J^α = Σ_labelled L + Σ_unlabelled U + α Σ_labelled −log q(y | x). Kingma et al. set α to
0.1 N in a sum over the data set; per example in a batch where labelled examples are oversampled to half of
every batch (see :func:`semi_supervised`), that is about 0.1 · N_unlabelled / N_labelled, i.e. 50 for
100 labels among 50 000 images, the default.

The same oversampling would give the labelled examples' bound L about N_unlabelled / N_labelled = 500
times the weight it has in eq. 9, where 100 images' L is 1/500 of the generative term: half of every
gradient step would then fit the generative model to those 100 images. Measured on MNIST with 100 labels
(the CS236 networks, all 100 labelled and 100 unlabelled images per step): 73.6 % test accuracy after
2,000 steps with L at weight 1, 79.4 % without it. So ``labelled_bound_weight`` (the weight of L on a
labelled row) is 0 by default, the paper's weighting to within 1/500 (and the CS236 homework's loss);
set 1 when the labelled examples are not oversampled.

**Unlabelled examples are marked with the label −1** in ``context`` (the trainer passes a dataset's ``y``).
:func:`semi_supervised` turns a labelled dataset into such a one. ``predict_proba`` is q(y | x), so
``dgm.evaluate`` reports the test accuracy. With ``generative=False`` only the classifier term is trained:
the same network as a purely supervised classifier on the labelled examples, the baseline M2 is compared
with.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor

from dgm.core.errors import ConfigError, DataError
from dgm.core.registry import register
from dgm.models.latent.networks import build_encoder
from dgm.models.latent.vae import VAE
from dgm.nn.functional import hidden_sizes_list


@register(
    "ssvae",
    description="semi-supervised VAE (M2): the label as a partially observed latent (-1 = unlabelled)",
    paper="Kingma, Rezende, Mohamed & Welling 2014, Semi-supervised Learning with Deep Generative Models",
    family="latent",
    tiny={"latent_dim": 2, "hidden_sizes": [8], "classifier_hidden_sizes": [8], "num_classes": 2},
    supports=("binary", "categorical", "real"),
)
class SSVAE(VAE):
    """The M2 model: p(y) p(z) p(x | y, z), q(y | x) q(z | x, y).

    Kingma, Rezende, Mohamed & Welling (2014), "Semi-supervised Learning with Deep Generative Models",
    NeurIPS.

    Args:
        num_classes: C.
        latent_dim: size of z (50 in the paper).
        hidden_sizes: widths of q(z | x, y) (p(x | y, z) mirrors them); the paper: one layer of 500.
        classifier_hidden_sizes: widths of the classifier q(y | x).
        classifier_activation: nonlinearity of the classifier (None: ``activation``).
        alpha: weight of −log q(y | x) on labelled examples (per example; see the module docstring).
        labelled_bound_weight: weight of a labelled example's bound L(x, y) in the training objective
            (0: see the module docstring; 1: eq. 9 as written, for labelled examples not oversampled).
        generative: False trains the classifier alone on the labelled examples (the supervised baseline).
        Other arguments as :class:`dgm.models.latent.vae.VAE`.
    """

    def __init__(
        self,
        event_shape,
        support: str = "binary",
        num_classes: int = 10,
        latent_dim: int = 50,
        hidden_sizes=(500,),
        classifier_hidden_sizes=(500,),
        architecture: str = "mlp",
        channels=(32, 64),
        activation: str = "softplus",
        decoder: str = "auto",
        classifier_activation: str | None = None,
        alpha: float = 50.0,
        labelled_bound_weight: float = 0.0,
        generative: bool = True,
        num_train_samples: int = 1,
        beta: float = 1.0,
        gradient: str = "reparam",
    ):
        if num_classes is None:
            raise ConfigError("ssvae needs num_classes")
        super().__init__(
            event_shape,
            support,
            latent_dim,
            hidden_sizes,
            architecture,
            channels,
            activation,
            decoder,
            num_train_samples,
            beta,
            gradient,
            analytic_kl=True,
            num_classes=num_classes,
        )
        for what, value in (("alpha", alpha), ("labelled_bound_weight", labelled_bound_weight)):
            if not (isinstance(value, int | float) and not isinstance(value, bool) and value >= 0):
                raise ConfigError(f"{what} must be a number >= 0, got {value!r}")
        self.alpha, self.generative = float(alpha), bool(generative)
        self.labelled_bound_weight = float(labelled_bound_weight)
        # Named encoder_y so that encoder_parameters() counts the classifier as part of q.
        self.encoder_y = build_encoder(
            architecture,
            self.event_shape,
            0,
            hidden_sizes_list(classifier_hidden_sizes, "classifier_hidden_sizes"),
            num_classes,
            activation if classifier_activation is None else classifier_activation,
            hidden_sizes_list(channels, "channels"),
            self.likelihood.input_scale,
        )

    # ------------------------------------------------------------------ the classifier q(y | x)
    def _class_logits(self, x: Tensor) -> Tensor:
        return self.encoder_y(x.to(self.dtype))

    def _label_log_posterior(self, x: Tensor, bounds: Tensor) -> Tensor:
        return torch.log_softmax(self._class_logits(x), -1)

    def predict_proba(self, x: Tensor) -> Tensor:
        """q(y | x), shape (N, C)."""
        return torch.softmax(self._class_logits(self.validate(x)), -1)

    def predict(self, x: Tensor) -> Tensor:
        """The most probable class under q(y | x), shape (N,)."""
        return self._class_logits(self.validate(x)).argmax(-1)

    # ------------------------------------------------------------------ training
    def training_terms(self, x, context=None, estimator: str | None = None) -> dict[str, Tensor]:
        """Per-example −w L(x, y) − α(−log q(y | x)) for labelled rows (w = ``labelled_bound_weight``),
        −U(x) for unlabelled ones (the objective; ``labelled`` and ``class_nll`` are returned for the
        metrics; ``reconstruction`` and ``kl`` are 0 on labelled rows with w = 0)."""
        x = self.validate(x)
        labels = self._labels(context, len(x))
        labelled = labels >= 0
        class_nll = torch.zeros(len(x), dtype=self.dtype, device=self.device)
        if labelled.any():
            logits = self._class_logits(x[labelled])
            class_nll = class_nll.index_put(
                (labelled,), F.cross_entropy(logits, labels[labelled], reduction="none")
            )
        zero = torch.zeros(len(x), dtype=self.dtype, device=self.device)
        terms = {"objective": zero, "reconstruction": zero, "kl": zero}
        bounded = ~labelled if self.labelled_bound_weight == 0 else torch.ones_like(labelled)
        if self.generative and bounded.any():
            # Labelled rows: a bound on log p(x, y) = log p(x | y) + log p(y), weighted; rows at weight 0
            # are not computed at all.
            rows = super().training_terms(x[bounded], labels[bounded], estimator)
            weight = torch.where(labelled[bounded], self.labelled_bound_weight, 1.0).to(self.dtype)
            rows["objective"] = weight * (rows["objective"] + labelled[bounded] * self.class_log_prior()[0])
            for k in terms:
                terms[k] = zero.index_put((bounded,), rows[k])
        terms["objective"] = terms["objective"] - self.alpha * class_nll
        terms["class_nll"] = class_nll
        terms["labelled"] = labelled
        return terms

    def loss_and_metrics(self, x: Tensor, context: Tensor | None = None):
        t = self.training_terms(x, context)
        loss = -t["objective"].mean()
        with torch.no_grad():
            labelled = t["labelled"]
            metrics = {
                "kl": t["kl"].mean(),
                "rec": -t["reconstruction"].mean(),
                "labelled_fraction": labelled.double().mean(),
            }
            metrics["nelbo"] = metrics["rec"] + metrics["kl"]
            if labelled.any():  # a batch without labels has no class NLL (NaN would poison the epoch's mean)
                metrics["class_nll"] = t["class_nll"][labelled].mean()
        return loss, metrics


def semi_supervised(dataset, labels_per_class: int = 10, seed: int = 0, oversample: bool = True):
    """A copy of a labelled ``dgm.data.Dataset`` keeping ``labels_per_class`` labels per class, −1 elsewhere.

    The kept examples are drawn with a generator seeded ``seed`` (balanced over classes, as in Kingma et al.
    2014's 100-label MNIST setting). With ``oversample`` the labelled examples are also repeated until
    they are as many as the unlabelled ones, so that every shuffled batch of the ordinary training loop
    holds about half labelled examples (the paper's implementation draws labelled and unlabelled
    mini-batches separately; this gives the same balance without a special loop). One epoch then visits
    every unlabelled example once.
    """
    if dataset.y is None or not dataset.num_classes:
        raise DataError(f"{dataset.name} has no labels to keep a subset of")
    y = dataset.y.long()
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(dataset.num_classes):
        idx = (y == c).nonzero().flatten()
        if len(idx) < labels_per_class:
            raise DataError(
                f"{dataset.name}: class {c} has {len(idx)} examples, fewer than {labels_per_class}"
            )
        keep.append(idx[torch.randperm(len(idx), generator=g)[:labels_per_class]])
    keep = torch.cat(keep)
    masked = torch.full_like(y, -1)
    masked[keep] = y[keep]
    x = dataset.x
    if oversample and len(keep):
        unlabelled = len(y) - len(keep)
        repeats = max(0, round(unlabelled / len(keep)) - 1)
        x = torch.cat([x, x[keep].repeat(repeats, *([1] * (x.dim() - 1)))])
        masked = torch.cat([masked, y[keep].repeat(repeats)])
    return dataclasses.replace(dataset, x=x, y=masked, split=f"{dataset.split}-{labels_per_class}-per-class")
