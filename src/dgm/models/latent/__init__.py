"""Latent-variable models (CS236 lectures 5–6): p(x) = ∫ p(x|z) p(z) dz, trained by variational inference.

Every module in this folder registers its model(s) when imported; importing the package imports them all.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
