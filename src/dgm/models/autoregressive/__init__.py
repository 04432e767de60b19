"""Autoregressive models (CS236 lectures 3–4): p(x) = Π_i p(x_i | x_<i) with different conditionals.

Every module in this folder registers its model(s) when imported; importing the package imports them all.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
