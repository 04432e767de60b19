"""RNADE: NADE for real-valued vectors, each conditional a mixture of Gaussians.

Uria, Murray & Larochelle (2013), "RNADE: The real-valued neural autoregressive density-estimator",
NeurIPS. NADE's tied input weights and running activation a_{d+1} = a_d + W[:, o_d] x_{o_d}, with the
activation rescaled per position before the nonlinearity, h_d = act(ρ_d a_d): a_d sums d-1 terms, and
ρ_d (learned, initially 1) lets each conditional undo that growth. Each conditional is a mixture density
network output:

    p(x_{o_d} | x_{o_<d}) = Σ_k α_{d,k} N(x_{o_d}; μ_{d,k}, σ_{d,k}²),
    α_d = softmax(V^α_d h_d + b^α_d),  μ_d = V^μ_d h_d + b^μ_d,  σ_d = exp(V^σ_d h_d + b^σ_d).

Evaluation is O(HD) by the same cumulative sum as NADE; sampling is O(HD) per sample.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Categorical, Distribution, MixtureSameFamily, Normal

from dgm.core.distributions import sample as draw
from dgm.core.errors import ConfigError
from dgm.core.registry import register
from dgm.models.autoregressive.nade import TiedAutoregressiveBody

# Bounds on log σ: keep the density finite and its gradients sane far from the data.
_LOG_SCALE_MIN, _LOG_SCALE_MAX = -9.0, 7.0


@register(
    "rnade",
    description="real-valued NADE: mixture-of-Gaussians conditionals with tied input weights",
    paper="Uria, Murray & Larochelle 2013, RNADE: The real-valued neural autoregressive density-estimator",
    family="autoregressive",
    tiny={"hidden_size": 8, "num_components": 3, "ordering": "random"},
    supports=("real",),
)
class RNADE(TiedAutoregressiveBody):
    """RNADE with ``num_components`` Gaussians per conditional.

    Uria, Murray & Larochelle (2013), "RNADE: The real-valued neural autoregressive density-estimator",
    NeurIPS.

    Args:
        event_shape: shape of one example (flattened to D values).
        support: ``"real"``.
        hidden_size: H, the number of hidden units.
        num_components: K, Gaussians per conditional.
        activation: ``"sigmoid"`` (as NADE) or ``"relu"`` (which the paper found better on some data).
        ordering: ``"natural"``, ``"reverse"``, ``"random"`` (drawn from ``seed``) or a permutation.
        num_classes: if set, the class label adds a learned vector to the hidden bias c: p(x | y).
        seed: seeds the initial weights and a random ordering.
    """

    def __init__(
        self,
        event_shape,
        support: str = "real",
        hidden_size: int = 100,
        num_components: int = 10,
        activation: str = "sigmoid",
        ordering="natural",
        num_classes: int | None = None,
        seed: int = 0,
    ):
        super().__init__(event_shape, support)
        if self.support.kind != "real":
            raise ConfigError("rnade models real-valued data; for binary/categorical data use nade")
        if num_components < 1:
            raise ConfigError(f"num_components must be positive, got {num_components}")
        if activation not in ("sigmoid", "relu"):
            raise ConfigError(f"activation must be 'sigmoid' or 'relu', got {activation!r}")
        self.activation = activation
        self.num_components = K = num_components
        self.num_inputs_per_dim, self.num_params = 1, 3 * K  # mixture logits, means, log-scales
        self._build_body(hidden_size, ordering, num_classes, seed, rho=True)
        # Means start spread over [-1, 1] so that the components are told apart from the first step.
        with torch.no_grad():
            self.b[:, K : 2 * K] = torch.linspace(-1, 1, K) if K > 1 else 0.0

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        K = self.num_components
        logits, loc, log_scale = params[..., :K], params[..., K : 2 * K], params[..., 2 * K :]
        return logits, loc, log_scale.clamp(_LOG_SCALE_MIN, _LOG_SCALE_MAX).exp()

    def _distribution(self, params: Tensor) -> Distribution:
        logits, loc, scale = self._split(params)
        return MixtureSameFamily(Categorical(logits=logits), Normal(loc, scale))

    def _draw(self, params: Tensor, generator) -> Tensor:
        """The component first, then its Gaussian (MixtureSameFamily draws take no generator)."""
        logits, loc, scale = self._split(params)
        k = draw(Categorical(logits=logits), (), generator)[:, None]
        return draw(Normal(loc.gather(1, k)[:, 0], scale.gather(1, k)[:, 0]), (), generator)

    def num_parameters(self) -> int:
        """Free parameters: W's last column is unused and the mixture logits are shift-invariant."""
        D, H, K = self.num_dims, self.hidden_size, self.num_components
        classes = self.num_classes * H if self.num_classes else 0
        return H * (D - 1) + H + D + D * (H + 1) * (3 * K - 1) + classes
