"""Every model family; importing this package registers every model."""

from dgm.models import classic  # noqa: F401
