"""MintNet: a flow of masked invertible convolutional layers with triangular Jacobians.

Song, Meng & Ermon (2019), "MintNet: Building Invertible Neural Networks with Masked Convolutions",
NeurIPS. Each layer (:class:`~dgm.models.flows.transforms.MaskedInvertibleLayer`) is a residual-like map
``z = t ⊙ x + W₃ ∗ h(W₂ ∗ h(W₁ ∗ x))`` of three masked convolutions whose Jacobian is triangular with a
positive diagonal, so ``log|det J| = Σ log diag`` comes out of the same pass. Layers come in pairs, one
lower- and one upper-triangular (the paper's type A and B blocks), so that a pair mixes every value with
every other; for images ``num_squeezes`` space-to-depth squeezes are spread evenly through the stack (the
paper: 20 pairs and 2 squeezes on MNIST, latent size 45), and the latent is the flattened output.

There is no closed-form inverse: sampling inverts each layer by the paper's fixed-point iteration
``x ← x − α (f(x) − z) / diag J_f(x)`` (Algorithm 1) to ``inverse_tol`` (DESIGN.md §3), falling back to an
exact one-value-at-a-time solve if it has not converged in ``max_iter`` passes; density evaluation is one
forward pass. Vectors ``(D,)`` are handled as ``(D, 1, 1)`` images with 1×1 kernels, each layer then an
autoregressive map with two hidden layers of ``latent_size · D`` units.

For dequantised images, set ``logit_alpha`` (the paper: 1e-6 on MNIST); its log-det is part of the density.
"""

from __future__ import annotations

from dgm.core.errors import ConfigError
from dgm.core.registry import register
from dgm.models.flows.base import Flow, make_base, preprocessing
from dgm.models.flows.transforms import ActNorm, Compose, MaskedInvertibleLayer, Reshape, Squeeze, Transform

NORMALIZATIONS = ("none", "actnorm")


@register(
    "mintnet",
    description="MintNet: masked invertible convolutions with triangular Jacobians, numerical inverse",
    paper="Song, Meng & Ermon 2019, MintNet: Building Invertible Neural Networks with Masked Convolutions",
    family="flows",
    tiny={"num_layers": 1, "latent_size": 2},
    supports=("real",),
)
class MintNet(Flow):
    """MintNet: masked invertible convolutions with triangular Jacobians, inverted by fixed-point iteration.

    Song, Meng & Ermon (2019), "MintNet: Building Invertible Neural Networks with Masked Convolutions",
    NeurIPS.

    Args:
        event_shape: ``(D,)`` or an image ``(C, H, W)``.
        support: ``"real"``.
        num_layers: pairs of (lower, upper) triangular layers (the paper: 20 on MNIST).
        latent_size: hidden channels per data channel in each layer (the paper: 45 on MNIST).
        kernel_size: odd kernel size of the masked convolutions on images (vectors use 1×1).
        num_squeezes: space-to-depth squeezes for images, spread evenly through the stack (the paper: 2 on
            28×28); H and W must be divisible by ``2^num_squeezes``. Ignored for vectors.
        normalization: ``"actnorm"`` after every pair (data-initialised, Glow), or ``"none"`` (the paper).
        inverse_tol: each layer's fixed-point iteration stops when every correction is within
            ``inverse_tol · (1 + |x|)`` (at least 32 ulp of the dtype).
        max_iter: iterations of the fixed-point inverse per layer before the exact (slow) sequential
            fallback.
        step_size: the starting α of the fixed-point iteration, in (0, 1] (halved when it stalls).
        base: ``"normal"`` (the paper), ``"logistic"`` or ``"mog"``.
        logit_alpha: if set, data in [0, 1] are first mapped by ``logit(α + (1 − 2α) x)`` (the paper: 1e-6).
        seed: seeds the initial weights.
    """

    def __init__(
        self,
        event_shape,
        support: str = "real",
        num_layers: int = 4,
        latent_size: int = 8,
        kernel_size: int = 3,
        num_squeezes: int = 2,
        normalization: str = "none",
        inverse_tol: float = 1e-6,
        max_iter: int = 200,
        step_size: float = 1.0,
        base: str = "normal",
        logit_alpha: float | None = None,
        seed: int = 0,
    ):
        super().__init__(event_shape, support)
        if num_layers < 1:
            raise ConfigError(f"num_layers must be positive, got {num_layers}")
        if normalization not in NORMALIZATIONS:
            raise ConfigError(
                f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}"
            )
        image = len(self.event_shape) == 3
        if image:
            shape, kernel = self.event_shape, kernel_size
            _, h, w = shape
            if num_squeezes < 0 or h % 2**num_squeezes or w % 2**num_squeezes:
                raise ConfigError(
                    f"{num_squeezes} squeezes need H and W divisible by {2 ** max(num_squeezes, 0)}, got "
                    f"{h}×{w}; use fewer squeezes"
                )
            front = preprocessing(self.event_shape, logit_alpha, flatten=False)
            squeeze_at = [(i + 1) * num_layers // (num_squeezes + 1) for i in range(num_squeezes)]
        else:
            shape, kernel = (self.num_dims, 1, 1), 1
            front = [
                *preprocessing(self.event_shape, logit_alpha, flatten=True),
                Reshape((self.num_dims,), shape),
            ]
            squeeze_at = []
        options = dict(
            latent_size=latent_size,
            kernel_size=kernel,
            inverse_tol=inverse_tol,
            max_iter=max_iter,
            step_size=step_size,
        )
        layers: list[Transform] = []
        for i in range(num_layers):
            for _ in range(squeeze_at.count(i)):
                layers.append(Squeeze(2))
                shape = layers[-1].output_shape(shape)
            layers.append(MaskedInvertibleLayer(shape, lower=True, seed=seed + 2 * i, **options))
            layers.append(MaskedInvertibleLayer(shape, lower=False, seed=seed + 2 * i + 1, **options))
            if normalization == "actnorm":
                layers.append(ActNorm(shape[0]))
        layers.append(Reshape(shape, (self.num_dims,)))
        self.transform = Compose([*front, *layers])
        self.base = make_base(base, (self.num_dims,), seed=seed)

    @property
    def inverse_layers(self) -> list[MaskedInvertibleLayer]:
        """The layers inverted numerically (their ``solve`` reports the passes it took)."""
        return [m for m in self.modules() if isinstance(m, MaskedInvertibleLayer)]
