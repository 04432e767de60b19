"""Normalizing flows (CS236 lectures 7–8): exact likelihood by the change-of-variables formula.

A flow is a stack of transforms (``transforms/``), each mapping data → latent with its log|det J|
(DESIGN.md §3). Every module in this folder registers its model(s) when imported.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
