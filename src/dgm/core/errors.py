"""Errors users see. Each carries a one-line message naming the problem; the CLI prints it as is."""


class DgmError(Exception):
    """Base class of every error `dgm` raises on purpose."""


class DataError(DgmError, ValueError):
    """Bad input data: wrong shape, dtype, NaN/inf, values outside the model's support, missing file."""


class ConfigError(DgmError, ValueError):
    """Unknown model or dataset name, unknown or ill-typed option."""


class CheckpointError(DgmError):
    """A run directory or checkpoint that is missing, truncated, corrupted or unsafe to load."""
