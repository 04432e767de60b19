"""Classic probabilistic models (CS236 lectures 2, 5): representation, tables, mixtures, naive Bayes."""

from dgm.models.classic.bayesnet import BayesNet
from dgm.models.classic.independent import IndependentModel
from dgm.models.classic.logistic import LogisticRegression
from dgm.models.classic.mixture import Mixture, MixtureBernoulli, MixtureGaussian
from dgm.models.classic.naive_bayes import NaiveBayes

__all__ = [
    "BayesNet",
    "IndependentModel",
    "LogisticRegression",
    "Mixture",
    "MixtureBernoulli",
    "MixtureGaussian",
    "NaiveBayes",
]
