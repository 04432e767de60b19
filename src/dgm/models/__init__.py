"""Every model family; importing this package registers every model."""

from dgm.models import autoregressive, classic  # noqa: F401
