"""Classic probabilistic models (CS236 lectures 2–3): representation, tables, mixtures, naive Bayes."""

from dgm.models.classic.independent import IndependentModel

__all__ = ["IndependentModel"]
