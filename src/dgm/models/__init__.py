"""Every model family; importing this package registers every model."""

from dgm.models import autoregressive, classic, flows, latent  # noqa: F401
