"""Likelihood evaluation: NLL in nats, bits/dim, per-example scores."""

from dgm.evaluation.metrics import accuracy, bits_per_dim, evaluate, log_prob_dataset, summarize_log_probs

__all__ = ["accuracy", "bits_per_dim", "evaluate", "log_prob_dataset", "summarize_log_probs"]
