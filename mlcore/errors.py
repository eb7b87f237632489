"""The one error family of mlcore: callers catch ``MlcoreError`` and show its message."""


class MlcoreError(Exception):
    """Base class: the message is one sentence a person can act on."""


class DataError(MlcoreError):
    """The labeled data cannot be read or is unfit for training."""


class ConfigError(MlcoreError):
    """A training option is out of range or asks for something unavailable."""


class BaseModelError(MlcoreError):
    """The base encoder could not be found or loaded."""


class ArtifactError(MlcoreError):
    """A model artifact is missing, truncated, corrupt or not ours."""


class TrainingCancelled(MlcoreError):
    """Training stopped between two steps because the caller asked it to."""
