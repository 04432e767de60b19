"""What density models are for: imputation / inpainting, anomaly detection, generative classification.

Each task works on every model it can, through the common interface, dispatching on what a model offers
(exact autoregressive conditionals, a closed-form distribution, or only ``log_prob``); see each module.

>>> from dgm.tasks import impute, parse_mask, detect, classify
>>> res = impute(model, x, parse_mask("bottom-half", model.event_shape, (1, 28, 28)), num_samples=4)
>>> res.completions.shape                              # (N, 4, *event_shape)
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
from dgm.tasks.sources import load_source

__all__ = [
    "AnomalyReport",
    "ClassificationResult",
    "Imputation",
    "available_methods",
    "average_precision",
    "best_threshold",
    "bits_per_dim_scores",
    "class_log_likelihoods",
    "class_log_prior",
    "classify",
    "conditional_log_prob",
    "detect",
    "fpr_at_tpr",
    "gibbs_impute",
    "impute",
    "likelihood_ratio",
    "load_source",
    "log_likelihood",
    "log_posterior",
    "marginal_log_prob",
    "metropolis_impute",
    "nll_scores",
    "ood_metrics",
    "parse_mask",
    "perturb",
    "roc_auc",
    "score_text",
    "select_method",
    "source_test",
    "typicality_scores",
]
