"""Model registry: ``dgm.build`` and ``dgm.list_models`` (DESIGN.md §2).

The CLI, the benchmarks and the shared property tests reach models only through here, so a model
registered once is trained, evaluated, sampled and tested like every other.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Any

from dgm.core.errors import ConfigError
from dgm.core.model import GenerativeModel


@dataclass(frozen=True)
class ModelEntry:
    name: str
    cls: type[GenerativeModel]
    description: str
    paper: str
    family: str
    # Small settings the shared property tests use (event_shape and support are added by the tests).
    tiny: dict[str, Any] = field(default_factory=dict)
    # Supports the model can be built for, e.g. ("binary", "categorical", "real").
    supports: tuple[str, ...] = ("binary",)
    # "vector": event_shape (D,); "image": (C, H, W). The shared tests shape their inputs accordingly.
    shape: str = "vector"

    def options(self) -> dict[str, inspect.Parameter]:
        params = dict(inspect.signature(self.cls.__init__).parameters)
        params.pop("self", None)
        return {k: p for k, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


_REGISTRY: dict[str, ModelEntry] = {}


def register(
    name: str,
    *,
    description: str,
    paper: str,
    family: str,
    tiny: dict[str, Any] | None = None,
    supports: tuple[str, ...] = ("binary",),
    shape: str = "vector",
):
    """Class decorator adding a :class:`GenerativeModel` subclass to the registry under ``name``."""

    def decorator(cls):
        if not (isinstance(cls, type) and issubclass(cls, GenerativeModel)):
            raise TypeError(f"{cls!r} is not a GenerativeModel subclass")
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"model name {name!r} is already registered to {_REGISTRY[name].cls.__name__}")
        if shape not in ("vector", "image"):
            raise ValueError(f"shape must be 'vector' or 'image', got {shape!r}")
        cls.name = name
        _REGISTRY[name] = ModelEntry(
            name, cls, description, paper, family, dict(tiny or {}), tuple(supports), shape
        )
        return cls

    return decorator


def get_entry(name: str) -> ModelEntry:
    _load_models()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_models() -> list[dict[str, str]]:
    """Registered models with a one-line description, the paper each implements and its family."""
    _load_models()
    return [
        {
            "name": e.name,
            "family": e.family,
            "description": e.description,
            "paper": e.paper,
            "exact": "exact" if e.cls.exact else "estimate",
        }
        for e in sorted(_REGISTRY.values(), key=lambda e: (e.family, e.name))
    ]


def build(model: str | dict, **options) -> GenerativeModel:
    """Build a model from a registry name and options, or from a ``config`` dict.

    >>> m = build("independent", event_shape=(64,))
    >>> build(m.config)  # the same architecture, fresh parameters
    """
    if isinstance(model, dict):
        config = copy.deepcopy(model)
        if "model" not in config:
            raise ConfigError("config dict has no 'model' key naming the model")
        name = config.pop("model")
        options = {**config, **options}
    elif isinstance(model, str):
        name = model
    else:
        raise ConfigError(f"build() takes a model name or a config dict, got {type(model).__name__}")
    entry = get_entry(name)
    accepted = entry.options()
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise ConfigError(f"model {name!r} has no option {names}; its options are: {', '.join(accepted)}")
    missing = [k for k, p in accepted.items() if p.default is inspect.Parameter.empty and k not in options]
    if missing:
        raise ConfigError(f"model {name!r} needs option {', '.join(map(repr, missing))}")
    try:
        return entry.cls(**options)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model {name!r}: {e}") from None


def _load_models() -> None:
    # Importing the models package registers every model; done lazily so `import dgm` stays light.
    import dgm.models  # noqa: F401
