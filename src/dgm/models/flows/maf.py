"""MAF: a stack of MADE affine layers, the order reversed between layers.

Papamakarios, Pavlakou & Murray (2017), "Masked Autoregressive Flow for Density Estimation", NeurIPS.
Each layer is the autoregressive affine map of :class:`MaskedAffineAutoregressive` (§3.1, eqs. 2–4):
``z_d = (x_d − μ_d(x_<d)) exp(−α_d(x_<d))``, with (μ, α) from one MADE pass, log|det| = −Σ α_d; each layer
models the random numbers of the one below. By default the layer computes the same map as
``z_d = x_d exp(−α_d) + m_d`` (``shift="after"``, μ = −m exp(α)), which trains better (see ``MAF``'s
``shift``). Consecutive layers use opposite orderings (or random ones);
batch normalisation between layers is optional (§3.4, appendix B, log-det included); the base is a
standard normal or, for MAF MoG, a learned mixture of Gaussians (the paper's MAF MoG uses a MADE MoG base;
this one is an unconditional diagonal mixture).

Density in one pass per layer; sampling in D sequential passes per layer.

A one-layer MAF *is* a Gaussian autoregressive model p(x_d | x_<d) = N(μ_d, exp(α_d)²) (§3.1); with more
layers it is strictly more flexible.
"""

from __future__ import annotations

from typing import ClassVar

from dgm.core.errors import ConfigError
from dgm.core.registry import register
from dgm.models.flows.base import Flow, make_base, preprocessing
from dgm.models.flows.transforms import BatchNorm, Compose, MaskedAffineAutoregressive, Transform
from dgm.nn.functional import hidden_sizes_list

ORDERINGS = ("alternate", "random")


def autoregressive_layers(
    num_features: int,
    num_layers: int,
    hidden_sizes,
    *,
    context_size: int = 0,
    orderings: str = "alternate",
    activation: str = "relu",
    hidden_degrees: str = "even",
    scale_clamp: float | None = 3.0,
    scale_clamp_fn: str = "tanh",
    scale_fn: str = "exp",
    identity_init: bool = True,
    shift: str = "before",
    residual_blocks: int = 0,
    seed: int = 0,
) -> list[MaskedAffineAutoregressive]:
    """``num_layers`` MADE affine layers; ``orderings="alternate"``: natural, reverse, natural, …;
    ``"random"``: a random ordering per layer (seeded from ``seed + layer``). Shared by MAF and IAF."""
    if num_layers < 1:
        raise ConfigError(f"num_layers must be positive, got {num_layers}")
    if orderings not in ORDERINGS:
        raise ConfigError(f"orderings must be one of {', '.join(ORDERINGS)}, got {orderings!r}")
    layers = []
    for i in range(num_layers):
        ordering = ("natural", "reverse")[i % 2] if orderings == "alternate" else "random"
        layers.append(
            MaskedAffineAutoregressive(
                num_features,
                hidden_sizes_list(hidden_sizes),
                context_size=context_size,
                ordering=ordering,
                activation=activation,
                hidden_degrees=hidden_degrees,
                scale_clamp=scale_clamp,
                scale_clamp_fn=scale_clamp_fn,
                scale_fn=scale_fn,
                identity_init=identity_init,
                shift=shift,
                residual_blocks=residual_blocks,
                seed=seed + i,
            )
        )
    return layers


@register(
    "maf",
    description="masked autoregressive flow: stacked MADE affine layers, order reversed between layers",
    paper="Papamakarios, Pavlakou & Murray 2017, Masked Autoregressive Flow for Density Estimation",
    family="flows",
    tiny={"num_layers": 2, "hidden_sizes": [8], "scale_clamp": 1.0},
    supports=("real",),
)
class MAF(Flow):
    """MAF (see the module docstring). Images are flattened (raster order).

    Args:
        event_shape: shape of one example.
        support: ``"real"``.
        num_layers: MADE layers (the paper: 5 or 10).
        hidden_sizes: hidden widths of each MADE, e.g. ``[100]`` or ``[1024]``.
        activation: hidden nonlinearity of the MADEs.
        orderings: ``"alternate"`` (reverse the order between layers, the paper) or ``"random"``.
        hidden_degrees: ``"even"`` or ``"random"`` MADE hidden degrees.
        batch_norm: batch normalisation between layers (running averages in evaluation).
        base: ``"normal"`` or ``"mog"`` (MAF MoG, ``num_components`` Gaussians).
        num_components: mixture components of the ``"mog"`` base.
        scale_clamp: c of the soft clamp ``c · tanh(α / c)`` on the log-scales (None: unclamped).
        scale_clamp_fn: ``"tanh"`` or ``"softsign"``, zuko's bound ``α / (1 + |α| / c)``
            (:func:`dgm.nn.soft_clamp`). With zuko's start (``identity_init=False``, ``scale_clamp=6.9``)
            and ``shift="after"`` this layer is zuko's, weights and gradients alike (benchmarks/RESULTS.md,
            flows-same-function and flows-toy-maf-zuko-softsign); tanh stays the default because on
            dequantised MNIST softsign cost 20 nats of test NLL after 6 epochs (flows-mnist).
        scale_fn: ``"exp"`` (each layer's scale ``exp(−α)``, α soft-clamped) or ``"softplus"`` (nflows'
            ``softplus(α̂) + 10⁻³``, unclamped).
        identity_init: each MADE's last layer starts at zero, so each layer starts as the identity (with
            ``scale_fn="softplus"`` as a scaling by ≈ 0.69); False keeps PyTorch's default there, as nflows.
        shift: ``"after"`` (``x · exp(−α) + m``, as nflows and zuko parametrise it) or ``"before"`` (the
            paper's ``(x − μ) · exp(−α)``): the same maps, reparametrised (see
            :mod:`dgm.models.flows.transforms.autoregressive`). ``"after"`` is the default because it
            trained better on dequantised MNIST (test NLL 6.6 ± 0.6 nats lower, paired, in the same 40
            minutes: benchmarks/RESULTS.md, flows_mnist rows maf and maf-shift-after) and dequantised
            digits (111.0 against 111.8 nats, 3 seeds); on the 2-D toys it is better on three, level on
            one, worse on two. Checkpoints written before the option existed load with ``"before"``, the
            form they were trained in.
        residual_blocks: 0: each layer's conditioner is a MADE with ``hidden_sizes``; B > 0: a ResMADE of B
            residual blocks of the one width in ``hidden_sizes`` (Nash & Durkan 2019; nflows' MAF
            conditioner; :class:`dgm.nn.masked.ResidualMaskedMLP`).
        logit_alpha: if set, data in [0, 1] are first mapped by ``logit(α + (1 − 2α) x)`` (the paper: 1e-6 on
            MNIST), its log-det included.
        num_classes: if set, a one-hot class label is an extra (unmasked) input of every MADE: p(x | y).
        seed: seeds the orderings, degrees and mixture means.
    """

    # Stored configs from before ``shift`` existed were built, and trained, with the paper's form.
    legacy_options: ClassVar[dict] = {"shift": "before"}

    def __init__(
        self,
        event_shape,
        support: str = "real",
        num_layers: int = 5,
        hidden_sizes=(100,),
        activation: str = "relu",
        orderings: str = "alternate",
        hidden_degrees: str = "even",
        batch_norm: bool = False,
        base: str = "normal",
        num_components: int = 10,
        scale_clamp: float | None = 3.0,
        scale_clamp_fn: str = "tanh",
        scale_fn: str = "exp",
        identity_init: bool = True,
        shift: str = "after",
        residual_blocks: int = 0,
        logit_alpha: float | None = None,
        num_classes: int | None = None,
        seed: int = 0,
    ):
        super().__init__(event_shape, support, num_classes)
        D = self.num_dims
        layers: list[Transform] = []
        made = autoregressive_layers(
            D,
            num_layers,
            hidden_sizes,
            context_size=self.context_size,
            orderings=orderings,
            activation=activation,
            hidden_degrees=hidden_degrees,
            scale_clamp=scale_clamp,
            scale_clamp_fn=scale_clamp_fn,
            scale_fn=scale_fn,
            identity_init=identity_init,
            shift=shift,
            residual_blocks=residual_blocks,
            seed=seed,
        )
        for i, layer in enumerate(made):
            layers.append(layer)
            if batch_norm and i < len(made) - 1:
                layers.append(BatchNorm(D))
        self.transform = Compose([*preprocessing(self.event_shape, logit_alpha, flatten=True), *layers])
        self.base = make_base(base, (D,), num_components, seed)
