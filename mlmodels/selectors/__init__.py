"""Reads of the model registry: versions, the active model of a kind (loaded once per process), comparisons, the
test digits a version gets wrong, and the pictures of a version. Every model version is readable by every
signed-in user; the interfaces check that the caller is signed in."""

from mlmodels.selectors.digits import (
    MNIST_TEST_SIZE,
    ConfusionCell,
    Mistake,
    MistakesPage,
    Order,
    TestDigitNotFound,
    confusion_cells,
    mnist_digit_image,
    mnist_test_set,
    version_mistakes,
)
from mlmodels.selectors.pictures import Picture, available_plots, mnist_digit_png, version_plot
from mlmodels.selectors.versions import (
    ArtifactUnreadable,
    KindOverview,
    ModelVersionNotFound,
    NoActiveModel,
    active_model,
    active_versions,
    model_version_active,
    model_version_get,
    model_version_training,
    model_versions_list,
    models_overview,
)

__all__ = [
    "MNIST_TEST_SIZE",
    "ArtifactUnreadable",
    "ConfusionCell",
    "KindOverview",
    "Mistake",
    "MistakesPage",
    "ModelVersionNotFound",
    "NoActiveModel",
    "Order",
    "Picture",
    "TestDigitNotFound",
    "active_model",
    "active_versions",
    "available_plots",
    "confusion_cells",
    "mnist_digit_image",
    "mnist_digit_png",
    "mnist_test_set",
    "model_version_active",
    "model_version_get",
    "model_version_training",
    "model_versions_list",
    "models_overview",
    "version_mistakes",
    "version_plot",
]
