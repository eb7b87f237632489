"""The ML core: data, training, evaluation, the artifact and the predictor.

Plain Python and torch. Never imports Django. Heavy modules (``datasets``,
the ``Trainer``) are imported only by :mod:`mlcore.train`, so that serving
code which imports :mod:`mlcore.predictor` stays light.
"""

from mlcore.errors import ArtifactError, BaseModelError, ConfigError, DataError, MlcoreError, TrainingCancelled

__all__ = ["ArtifactError", "BaseModelError", "ConfigError", "DataError", "MlcoreError", "TrainingCancelled"]
