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
    for key, value in options.items():
        _check_type(name, key, value, accepted[key])
    try:
        return entry.cls(**options)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model {name!r}: {e}") from None


def _check_type(model: str, key: str, value, parameter: inspect.Parameter) -> None:
    """A ConfigError naming the option when ``value`` cannot be what a bool, int or float default says:
    without it, ``--batch-norm maybe`` was stored as the string 'maybe' (and switched batch norm on) and
    ``--alpha abc`` failed deep inside the model with "'<' not supported between 'str' and 'int'"."""
    default = parameter.default
    if not isinstance(default, bool | int | float) or default is None:
        return
    if value is None and "None" in str(parameter.annotation):
        return
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int) and "float" not in str(parameter.annotation):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
    else:
        ok, kind = isinstance(value, int | float) and not isinstance(value, bool), "a number"
    if not ok:
        raise ConfigError(f"model {model!r}: option {key} must be {kind}, got {value!r}")


def _load_models() -> None:
    # Importing the models package registers every model; done lazily so `import dgm` stays light.
    import dgm.models  # noqa: F401
