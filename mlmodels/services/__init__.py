"""Every change to the model registry goes through these functions: requesting and running a training (in a worker
or in this process), activation (and so rollback), deletion, recovery of stalled training, making sure each kind
has an active version. The predictions of the active versions are in `mlmodels.predictions`, which writes
nothing."""

from mlmodels.selectors import ModelVersionNotFound
from mlmodels.services.options import (
    MNIST_OPTIONS,
    TITANIC_OPTIONS,
    TrainingOptionsInvalid,
    default_architecture,
    default_options,
)
from mlmodels.services.registry import (
    VersionIsActive,
    VersionNotReady,
    model_version_activate,
    model_version_delete,
)
from mlmodels.services.training import (
    ProgressCallback,
    TrainingFailed,
    model_version_request,
    model_version_train,
    model_version_train_now,
)
from mlmodels.services.upkeep import Ensured, model_versions_recover_stalled, models_ensure

__all__ = [
    "MNIST_OPTIONS",
    "TITANIC_OPTIONS",
    "Ensured",
    "ModelVersionNotFound",
    "ProgressCallback",
    "TrainingFailed",
    "TrainingOptionsInvalid",
    "VersionIsActive",
    "VersionNotReady",
    "default_architecture",
    "default_options",
    "model_version_activate",
    "model_version_delete",
    "model_version_request",
    "model_version_train",
    "model_version_train_now",
    "model_versions_recover_stalled",
    "models_ensure",
]
