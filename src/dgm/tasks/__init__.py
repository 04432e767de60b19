"""What density models are for: imputation / inpainting, super-resolution, denoising, anomaly detection,
generative classification, and the detection and purification of adversarial examples (PixelDefend).

Each task works on every model it can, through the common interface, dispatching on what a model offers
(exact autoregressive conditionals, a closed-form distribution, a flow's or a VAE's latent space, or only
``log_prob``); see each module: :mod:`~dgm.tasks.imputation`, :mod:`~dgm.tasks.superres`,
:mod:`~dgm.tasks.denoising`, :mod:`~dgm.tasks.anomaly`, :mod:`~dgm.tasks.classification`,
:mod:`~dgm.tasks.purification`.

>>> from dgm.tasks import impute, parse_mask, detect, classify, super_resolve, denoise, purify
>>> res = impute(model, x, parse_mask("bottom-half", model.event_shape, (1, 28, 28)), num_samples=4)
>>> res.completions.shape                              # (N, 4, *event_shape)
>>> denoise(flow, add_noise(x, "gaussian:0.1"), "gaussian:0.1").mean   # E[x | y]
>>> super_resolve(pixelcnn, downsample(x, 4), num_samples=4)            # x ~ p(x | low-res x)

``select_method`` and ``available_methods`` here are imputation's; denoising's are in
:mod:`dgm.tasks.denoising`.
"""

from dgm.tasks.anomaly import (
    AnomalyReport,
    average_precision,
    bits_per_dim_scores,
    detect,
    fpr_at_tpr,
    likelihood_ratio,
    log_likelihood,
    nll_scores,
    ood_metrics,
    perturb,
    roc_auc,
    typicality_scores,
)
from dgm.tasks.classification import (
    ClassificationResult,
    best_threshold,
    class_log_likelihoods,
    class_log_prior,
    classify,
    log_posterior,
    score_text,
    source_test,
)
from dgm.tasks.denoising import (
    Denoising,
    FlipNoise,
    GaussianNoise,
    add_noise,
    denoise,
    parse_noise,
    psnr,
)
from dgm.tasks.imputation import (
    Imputation,
    available_methods,
    conditional_log_prob,
    gibbs_impute,
    impute,
    marginal_log_prob,
    metropolis_impute,
    select_method,
)
from dgm.tasks.masks import parse_mask
from dgm.tasks.purification import (
    PurificationReport,
    SmallCNN,
    attack,
    defend,
    fgsm,
    p_values,
    pgd,
    purify,
    quantize,
    train_classifier,
)
from dgm.tasks.sources import load_source
from dgm.tasks.superres import (
    SuperResolution,
    consistency_error,
    downsample,
    low_resolution,
    super_resolve,
    upsample,
)

__all__ = [
    "AnomalyReport",
    "ClassificationResult",
    "Denoising",
    "FlipNoise",
    "GaussianNoise",
    "Imputation",
    "PurificationReport",
    "SmallCNN",
    "SuperResolution",
    "add_noise",
    "attack",
    "available_methods",
    "average_precision",
    "best_threshold",
    "bits_per_dim_scores",
    "class_log_likelihoods",
    "class_log_prior",
    "classify",
    "conditional_log_prob",
    "consistency_error",
    "defend",
    "denoise",
    "detect",
    "downsample",
    "fgsm",
    "fpr_at_tpr",
    "gibbs_impute",
    "impute",
    "likelihood_ratio",
    "load_source",
    "log_likelihood",
    "log_posterior",
    "low_resolution",
    "marginal_log_prob",
    "metropolis_impute",
    "nll_scores",
    "ood_metrics",
    "p_values",
    "parse_mask",
    "parse_noise",
    "perturb",
    "pgd",
    "psnr",
    "purify",
    "quantize",
    "roc_auc",
    "score_text",
    "select_method",
    "source_test",
    "super_resolve",
    "train_classifier",
    "typicality_scores",
    "upsample",
]
