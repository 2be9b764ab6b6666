"""Errors a user can cause. Each says what went wrong and what to do about it.

The CLI turns every :class:`MechlabError` into a one-paragraph message and a non-zero exit code;
anything else is a bug and keeps its traceback.
"""


class MechlabError(Exception):
    """Base class of the errors a user can cause (bad input, missing files, divergence)."""


class ConfigError(MechlabError, ValueError):
    """An invalid configuration value or an unknown preset name."""


class DataError(MechlabError):
    """A corpus file that is missing, corrupt or cannot be fetched."""


class CheckpointError(MechlabError):
    """A checkpoint that is missing, truncated or does not match its manifest."""


class TrainingDiverged(MechlabError):
    """The loss became NaN or infinite."""
