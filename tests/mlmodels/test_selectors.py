import time
from datetime import timedelta

import pytest
from django.utils import timezone

from core import jobs
from core.errors import InvalidInput
from mlmodels import presentation, selectors, services
from mlmodels.models import ModelVersion
from tests.mlmodels.conftest import TINY_MNIST

pytestmark = pytest.mark.django_db


def test_the_comparison_marks_the_best_value_of_each_metric_and_no_tie(active_mnist):
    other = services.model_version_train_now(kind="mnist", options=TINY_MNIST)
    ModelVersion.objects.filter(pk=other.pk).update(
        metrics={**other.metrics, "test_accuracy": 0.99, "test_log_loss": 0.05}
    )

    comparison = presentation.versions_compare(kind="mnist", ids=[active_mnist.pk, other.pk])

    rows = {label: (values, best) for label, values, best in comparison.metrics}
    assert [v.version for v in comparison.versions] == [2, 1]
    assert rows["Test accuracy"] == (["99.00 %", f"{100 * active_mnist.metrics['test_accuracy']:.2f} %"], 0)
    assert rows["Test log loss"][1] == 0  # lower is better
    assert rows["Test F1 (macro)"][1] is None  # the same in both
    assert rows["Parameters"][1] is None  # neither better nor worse
    assert len(comparison.per_class) == 10


def test_mistakes_can_be_ordered_most_confident_first(active_mnist):
    found = selectors.version_mistakes(version_id=active_mnist.pk, order="confidence", per_page=20)

    confidences = [mistake.confidence for mistake in found.page]
    assert confidences == sorted(confidences, reverse=True)
    assert confidences[0] == max(active_mnist.misclassified_confidence)
    assert found.matching == found.total_mistakes == len(active_mnist.misclassified_indices)


def test_mistakes_are_only_for_trained_mnist_versions(active_titanic):
    with pytest.raises(selectors.NoActiveModel):
        selectors.version_mistakes(version_id=None)
    with pytest.raises(InvalidInput, match="not a trained MNIST version"):
        selectors.version_mistakes(version_id=active_titanic.pk)


def test_nested_hyperparameters_read_as_dotted_names_in_order():
    rows = presentation.flatten_parameters(
        {
            "steps": [
                ["scale", {"class": "StandardScaler", "params": {"with_std": True, "with_mean": True}}]
            ],
            "tol": 1e-06,
            "hidden_layer_sizes": [1024, 1024],
        }
    )

    assert rows == [
        ("hidden_layer_sizes", "[1024, 1024]"),
        ("scale", "StandardScaler"),
        ("scale.with_mean", "true"),
        ("scale.with_std", "true"),
        ("tol", "1e-06"),
    ]


def test_metrics_read_as_people_read_them():
    rows = presentation.metric_rows(
        {"zeta": 0.5, "test_error_count": 183.0, "test_accuracy": 0.9817, "val_loss": None}
    )

    assert [(row.label, row.display) for row in rows] == [
        ("Test accuracy", "98.17 %"),
        ("Test digits wrong", "183"),
        ("Validation loss (best epoch)", "—"),
        ("Zeta", "0.5000"),
    ]


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_shows_a_training_process_is_alive_between_epochs(settings):
    settings.MLMODELS_TRAIN_HEARTBEAT_SECONDS = 0.05
    version = services.model_version_request(kind="titanic", enqueue=False)
    long_ago = timezone.now() - timedelta(hours=1)
    ModelVersion.objects.filter(pk=version.pk).update(status="TRAINING", task_id="me", heartbeat_at=long_ago)

    with jobs.Heartbeat(
        ModelVersion.objects.filter(pk=version.pk, status="TRAINING", task_id="me"),
        interval=settings.MLMODELS_TRAIN_HEARTBEAT_SECONDS,
        name="the version",
    ):
        time.sleep(0.5)

    version.refresh_from_db()
    assert version.heartbeat_at > timezone.now() - timedelta(seconds=5)
