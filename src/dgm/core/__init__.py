"""Model base class, registry, checkpoints, input validation and errors."""

from dgm.core.checkpoint import load
from dgm.core.errors import CheckpointError, ConfigError, DataError, DgmError
from dgm.core.model import GenerativeModel
from dgm.core.registry import build, get_entry, list_models, register
from dgm.core.support import Support, check_input

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DgmError",
    "GenerativeModel",
    "Support",
    "build",
    "check_input",
    "get_entry",
    "list_models",
    "load",
    "register",
]
