"""NICE: additive coupling layers and a diagonal scaling, with a logistic (or Gaussian) prior.

Dinh, Krueger & Bengio (2014), "NICE: Non-linear Independent Components Estimation". Each coupling layer
(§3.2) keeps one half of the values and shifts the other by an MLP of the kept half, ``z_b = x_b + m(x_a)``;
consecutive layers swap the halves (odd/even features). Additive coupling is volume preserving, so the
only log-det is that of the final diagonal scaling ``z = exp(S) ⊙ h`` (§3.3): log p(x) = Σ log p(z_d) + Σ S_d.
The paper uses 4 coupling layers of 5 × 1000 ReLU units and a standard logistic prior (§3.4, §5.1).
"""

from __future__ import annotations

import math

from dgm.core.errors import ConfigError
from dgm.core.registry import register
from dgm.models.flows.base import Flow, make_base, preprocessing
from dgm.models.flows.transforms import AdditiveCoupling, Compose, ElementwiseAffine, alternating_mask
from dgm.nn.functional import hidden_sizes_list

PAPER_HIDDEN = (1000, 1000, 1000, 1000, 1000)  # §5.1: 5 × 1000 ReLU units per coupling MLP (MNIST)
SMALL_HIDDEN = (256, 256)


@register(
    "nice",
    description="NICE: additive coupling layers + diagonal scaling, logistic or Gaussian base",
    paper="Dinh, Krueger & Bengio 2014, NICE: Non-linear Independent Components Estimation",
    family="flows",
    # A Gaussian base in the shared tests: their 1-D integral spans [-60, 60], which a logistic tail
    # stretched by a randomly perturbed scaling can exceed (the logistic base has its own tests).
    # No data initialisation there either: their 1-D density integral feeds a [-60, 60] grid as one batch,
    # which would become the first training batch (the initialisation has its own tests).
    tiny={"num_layers": 2, "hidden_sizes": [8], "base": "normal", "data_init": False},
    supports=("real",),
)
class NICE(Flow):
    """NICE on vectors (images are flattened).

    Dinh, Krueger & Bengio (2014), "NICE: Non-linear Independent Components Estimation".

    Args:
        event_shape: shape of one example (flattened to D values).
        support: ``"real"``.
        num_layers: number of additive coupling layers (the paper: 4).
        hidden_sizes: hidden widths of each coupling MLP. ``"auto"``: the paper's five layers of 1000 for
            image-sized data (D ≥ 256), two layers of 256 below that (the 2-D toys, 8×8 digits), where the
            paper's network would put 16M parameters on two numbers and train 20× slower than realnvp's.
        activation: hidden nonlinearity (the paper: ReLU).
        base: ``"logistic"`` (the paper) or ``"normal"``.
        logit_alpha: if set, data in [0, 1] are first mapped by ``logit(α + (1 − 2α) x)`` (log-det included);
            the paper models dequantised pixels in [0, 1] directly (None).
        num_classes: if set, a one-hot class label is an extra input of every coupling MLP: p(x | y).
        data_init: start the diagonal scaling from the first batch seen in training mode (as ActNorm
            does), so that each latent's root mean square is the base's standard deviation (not in the
            paper, whose 1,500 epochs let Adam grow the scaling from 1; from the identity, 8 CPU epochs
            left it at e² where the background pixels need about e⁶: 7.26 bits/dim, against 4.47 after
            26 epochs with it). False starts from the identity, as the paper does.
    """

    def __init__(
        self,
        event_shape,
        support: str = "real",
        num_layers: int = 4,
        hidden_sizes="auto",
        activation: str = "relu",
        base: str = "logistic",
        logit_alpha: float | None = None,
        num_classes: int | None = None,
        data_init: bool = True,
    ):
        super().__init__(event_shape, support, num_classes)
        if num_layers < 1:
            raise ConfigError(f"num_layers must be positive, got {num_layers}")
        D = self.num_dims
        if hidden_sizes == "auto":
            hidden_sizes = PAPER_HIDDEN if D >= 256 else SMALL_HIDDEN
        elif isinstance(hidden_sizes, str):
            raise ConfigError(
                f"hidden_sizes must be 'auto', a positive int or a list of them, got {hidden_sizes!r}"
            )
        base_std = math.pi / math.sqrt(3) if base == "logistic" else 1.0  # the standard logistic's: π/√3
        couplings = [
            AdditiveCoupling(
                alternating_mask(D, i % 2),
                context_size=self.context_size,
                hidden_sizes=hidden_sizes_list(hidden_sizes),
                activation=activation,
            )
            for i in range(num_layers)
        ]
        self.transform = Compose(
            [
                *preprocessing(self.event_shape, logit_alpha, flatten=True),
                *couplings,
                ElementwiseAffine(D, shift=False, data_init=base_std if data_init else None),
            ]
        )
        self.base = make_base(base, (D,))
