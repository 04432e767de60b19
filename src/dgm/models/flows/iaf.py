"""IAF: MAF's autoregressive layers run in the other direction, latent → data in one pass.

Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling (2016), "Improved Variational Inference with
Inverse Autoregressive Flow", NeurIPS. In IAF the shift and scale of x_d are computed from the *noise*
z_<d, so every x_d is produced at once: x = T(z) with T a MADE affine layer. In this library's convention
(data → latent) that is ``InverseTransform`` of the very same :class:`MaskedAffineAutoregressive` layers
MAF uses (Papamakarios et al. 2017, §3.3), not a second implementation:

* ``sample`` / ``sample_and_log_prob``: one MADE pass per layer; the samples' log-densities come from the
  same pass (log p(x) = log p(z) − log|det ∂x/∂z|, the noise z being at hand).
* ``log_prob`` of an outside point: finding the noise that produced it costs **D sequential MADE passes
  per layer** (the MAF direction). Fine for evaluation on small D; for training on data use MAF.

IAF is what probability density distillation trains (Parallel WaveNet): a student scored on its own
samples with :meth:`sample_and_log_prob`.
"""

from __future__ import annotations

from dgm.core.registry import register
from dgm.models.flows.base import Flow, make_base, preprocessing
from dgm.models.flows.maf import autoregressive_layers
from dgm.models.flows.transforms import Compose, InverseTransform


@register(
    "iaf",
    description="inverse autoregressive flow: MAF's layers run latent → data; one-pass sampling",
    paper="Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling 2016, "
    "Improved Variational Inference with Inverse Autoregressive Flow",
    family="flows",
    tiny={"num_layers": 2, "hidden_sizes": [8], "scale_clamp": 1.0},
    supports=("real",),
)
class IAF(Flow):
    """Inverse autoregressive flow: sampling in one pass. Images are flattened (raster order).

    Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling (2016), "Improved Variational Inference with
    Inverse Autoregressive Flow", NeurIPS.

    ``log_prob(x)`` of a point the model did not sample costs D sequential passes per layer;
    ``sample_and_log_prob`` scores the model's own samples in one pass.

    Args:
        event_shape: shape of one example.
        support: ``"real"``.
        num_layers: MADE layers.
        hidden_sizes: hidden widths of each MADE.
        activation: hidden nonlinearity of the MADEs.
        orderings: ``"alternate"`` (reverse the order between layers) or ``"random"``.
        hidden_degrees: ``"even"`` or ``"random"`` MADE hidden degrees.
        base: ``"normal"``, ``"logistic"`` or ``"mog"`` (``num_components`` Gaussians).
        num_components: mixture components of the ``"mog"`` base.
        scale_clamp: c of the soft clamp on the log-scales (None: unclamped).
        scale_clamp_fn: ``"tanh"`` or ``"softsign"`` (zuko's bound; see MAF).
        scale_fn: ``"exp"`` or ``"softplus"`` (nflows' scale; see MAF).
        identity_init: each MADE's last layer starts at zero (False: PyTorch's default there; see MAF).
        shift: ``"before"`` or ``"after"``: where each layer's shift sits (see MAF).
        residual_blocks: 0 (MADE) or B > 0 (a ResMADE of B blocks of the one width in ``hidden_sizes``; see
            MAF).
        logit_alpha: if set, data in [0, 1] are modelled through ``logit(α + (1 − 2α) x)``.
        num_classes: if set, a one-hot class label is an extra input of every MADE: p(x | y).
        seed: seeds the orderings, degrees and mixture means.
    """

    def __init__(
        self,
        event_shape,
        support: str = "real",
        num_layers: int = 5,
        hidden_sizes=(100,),
        activation: str = "relu",
        orderings: str = "alternate",
        hidden_degrees: str = "even",
        base: str = "normal",
        num_components: int = 10,
        scale_clamp: float | None = 3.0,
        scale_clamp_fn: str = "tanh",
        scale_fn: str = "exp",
        identity_init: bool = True,
        shift: str = "before",
        residual_blocks: int = 0,
        logit_alpha: float | None = None,
        num_classes: int | None = None,
        seed: int = 0,
    ):
        super().__init__(event_shape, support, num_classes)
        D = self.num_dims
        layers = autoregressive_layers(
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
        # Data → latent is the inverse of the stack read latent → data: reversing the layer list makes
        # the first MADE pass of sampling the one nearest the noise.
        self.transform = Compose(
            [
                *preprocessing(self.event_shape, logit_alpha, flatten=True),
                InverseTransform(Compose(layers)),
            ]
        )
        self.base = make_base(base, (D,), num_components, seed)
