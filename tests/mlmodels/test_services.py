import hashlib
from datetime import timedelta

import numpy as np
import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from mlmodels import predictions, selectors, services
from mlmodels.core.serialization import load_model
from mlmodels.core.training import train_mnist, train_titanic
from mlmodels.datasets import load_titanic
from mlmodels.models import ModelVersion
from mlmodels.services import training as training_service
from tests.mlmodels.conftest import TINY_MNIST, TINY_TITANIC

pytestmark = pytest.mark.django_db


def test_training_titanic_records_a_ready_version_whose_file_predicts_like_the_trained_model():
    steps = []

    version = services.model_version_train_now(
        kind="titanic", options=TINY_TITANIC, on_progress=lambda step, total, row: steps.append((step, total))
    )

    assert version.status == ModelVersion.Status.READY
    assert version.version == 1 and version.architecture == "logreg"
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert [row["fold"] for row in version.history] == [1, 2]
    assert 0.7 < version.metrics["cv_accuracy_mean"] < 0.9
    assert version.dataset["n_splits"] == 2 and "2-fold" in version.dataset["split"]
    assert np.asarray(version.confusion_matrix).sum() == 891
    assert len(version.misclassified_indices) == 891 - np.trace(np.asarray(version.confusion_matrix))
    assert version.hyperparameters["steps"][2][1]["class"] == "LogisticRegression"
    assert set(version.extra["coefficients"]) >= {"female", "class_3"}
    with version.artifact.open("rb") as handle:
        data = handle.read()
    assert hashlib.sha256(data).hexdigest() == version.artifact_sha256
    assert version.artifact_size == len(data)
    passengers = load_titanic().records
    same_run = train_titanic(n_splits=2).model
    with version.artifact.open("rb") as handle:
        stored = load_model(handle)
    assert np.allclose(stored.predict_proba(passengers), same_run.predict_proba(passengers))


def test_training_mnist_records_curves_mistakes_and_a_file_that_predicts_like_the_trained_model():
    version = services.model_version_train_now(kind="mnist", architecture="mlp", options=TINY_MNIST)

    assert version.status == ModelVersion.Status.READY
    assert [row["epoch"] for row in version.history] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(version.history[0])
    assert version.dataset["n_fit"] == 600 and version.dataset["n_validation"] == 500
    assert version.class_labels == list(range(10))
    wrong = len(version.misclassified_indices)
    assert (
        wrong == version.metrics["test_error_count"] == 10000 - np.trace(np.asarray(version.confusion_matrix))
    )
    assert len(version.misclassified_predicted) == len(version.misclassified_confidence) == wrong
    _, labels = selectors.mnist_test_set()
    first = version.misclassified_indices[0]
    assert version.misclassified_predicted[0] != labels[first]
    same_run = train_mnist(
        arch="mlp",
        epochs=2,
        train_size=600,
        validation_size=500,
        overrides={"hidden_layer_sizes": (32,), "batch_size": 64},
    ).model
    images, _ = selectors.mnist_test_set()
    probe = images[:200].reshape(-1, 784).astype(np.float32) / 255
    with version.artifact.open("rb") as handle:
        stored = load_model(handle)
    assert np.allclose(stored.predict_proba(probe), same_run.predict_proba(probe), atol=1e-6)


def test_a_failing_training_ends_failed_with_its_reason_and_never_becomes_active():
    version = services.model_version_train_now(
        kind="mnist", options={**TINY_MNIST, "overrides": {"no_such_parameter": 1}}
    )

    assert version.status == ModelVersion.Status.FAILED
    assert "no parameter 'no_such_parameter'" in version.error
    assert not version.is_active
    assert version.artifact_sha256 == ""
    assert selectors.model_version_active(kind="mnist") is None


def test_invalid_training_options_are_refused_before_anything_is_recorded():
    with pytest.raises(services.TrainingOptionsInvalid, match="Unknown training options"):
        services.model_version_request(kind="titanic", options={"epochs": 3})
    with pytest.raises(services.TrainingOptionsInvalid, match="epochs"):
        services.model_version_request(kind="mnist", options={"epochs": 0})
    with pytest.raises(services.TrainingOptionsInvalid, match="logreg"):
        services.model_version_request(kind="titanic", architecture="cnn")

    assert not ModelVersion.objects.exists()


def test_the_first_ready_version_becomes_active_and_later_ones_only_when_asked(active_titanic):
    later = services.model_version_train_now(kind="titanic", options=TINY_TITANIC)
    asked = services.model_version_train_now(kind="titanic", options=TINY_TITANIC, activate=True)

    active_titanic.refresh_from_db()
    later.refresh_from_db()
    assert [active_titanic.version, later.version, asked.version] == [1, 2, 3]
    assert not active_titanic.is_active and not later.is_active and asked.is_active
    assert ModelVersion.objects.filter(kind="titanic", is_active=True).count() == 1


def test_activating_an_older_version_rolls_back(active_titanic):
    newer = services.model_version_train_now(kind="titanic", options=TINY_TITANIC, activate=True)

    services.model_version_activate(version_id=active_titanic.pk)

    newer.refresh_from_db()
    assert selectors.model_version_active(kind="titanic").pk == active_titanic.pk
    assert not newer.is_active


def test_only_a_ready_version_can_be_activated():
    pending = services.model_version_request(kind="titanic", enqueue=False)

    with pytest.raises(services.VersionNotReady):
        services.model_version_activate(version_id=pending.pk)
    with pytest.raises(services.ModelVersionNotFound):
        services.model_version_activate(version_id=pending.pk + 1000)


def test_the_database_refuses_two_active_versions_of_one_kind(active_titanic):
    other = services.model_version_train_now(kind="titanic", options=TINY_TITANIC)

    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=other.pk).update(is_active=True)


def test_the_active_version_cannot_be_deleted_but_an_old_one_goes_with_its_file(
    active_titanic, django_capture_on_commit_callbacks
):
    newer = services.model_version_train_now(kind="titanic", options=TINY_TITANIC)
    storage, name = newer.artifact.storage, newer.artifact.name

    with pytest.raises(services.VersionIsActive):
        services.model_version_delete(version_id=active_titanic.pk)
    with django_capture_on_commit_callbacks(execute=True):
        services.model_version_delete(version_id=newer.pk)

    assert not ModelVersion.objects.filter(pk=newer.pk).exists()
    assert not storage.exists(name)


def test_training_a_finished_version_again_changes_nothing(active_titanic):
    before = active_titanic.updated_at

    again = services.model_version_train(version_id=active_titanic.pk)

    assert again.status == ModelVersion.Status.READY and again.updated_at == before


def test_a_version_held_by_a_live_worker_is_left_to_it():
    version = services.model_version_request(kind="titanic", options=TINY_TITANIC, enqueue=False)
    ModelVersion.objects.filter(pk=version.pk).update(
        status=ModelVersion.Status.TRAINING, task_id="other-task", heartbeat_at=timezone.now(), attempts=1
    )

    result = services.model_version_train(version_id=version.pk, task_id="redelivered-task")

    assert result.status == ModelVersion.Status.TRAINING and result.task_id == "other-task"


def test_a_version_whose_worker_died_is_taken_over_by_a_redelivery(settings):
    version = services.model_version_request(kind="titanic", options=TINY_TITANIC, enqueue=False)
    silent_since = timezone.now() - timedelta(seconds=settings.MLMODELS_TRAIN_STALE_SECONDS + 60)
    ModelVersion.objects.filter(pk=version.pk).update(
        status=ModelVersion.Status.TRAINING, task_id="dead-task", heartbeat_at=silent_since, attempts=1
    )

    result = services.model_version_train(version_id=version.pk, task_id="redelivered-task")

    assert result.status == ModelVersion.Status.READY
    assert result.attempts == 2 and result.task_id == "redelivered-task"


def test_recovery_retries_silent_trainings_then_fails_them_and_requeues_forgotten_ones(
    settings, django_capture_on_commit_callbacks
):
    settings.MLMODELS_TRAIN_MAX_ATTEMPTS = 3
    retried = services.model_version_request(kind="titanic", enqueue=False)
    exhausted = services.model_version_request(kind="titanic", enqueue=False)
    forgotten = services.model_version_request(kind="mnist", enqueue=False)
    long_ago = timezone.now() - timedelta(hours=3)
    ModelVersion.objects.filter(pk__in=[retried.pk, exhausted.pk]).update(
        status=ModelVersion.Status.TRAINING,
        heartbeat_at=long_ago,
        current_epoch=2,
        total_epochs=6,
        attempts=1,
    )
    ModelVersion.objects.filter(pk=exhausted.pk).update(attempts=3)
    ModelVersion.objects.filter(pk=forgotten.pk).update(queued_at=long_ago)

    with django_capture_on_commit_callbacks() as callbacks:
        touched = services.model_versions_recover_stalled()

    retried.refresh_from_db()
    exhausted.refresh_from_db()
    assert set(touched) == {retried.pk, exhausted.pk, forgotten.pk}
    assert retried.status == ModelVersion.Status.PENDING
    assert "stopped reporting" in retried.error and "Queued again (attempt 2)" in retried.error
    assert exhausted.status == ModelVersion.Status.FAILED
    assert "epoch 2 of 6" in exhausted.error and "3 tries" in exhausted.error
    assert len(callbacks) == 2  # the retried one and the forgotten one


def test_ensure_queues_each_missing_model_once_and_returns_at_once(
    settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.MLMODELS_MNIST_DEFAULT_ARCH = "cnn"
    settings.MLMODELS_MNIST_DEFAULT_EPOCHS = 3
    sent = []
    monkeypatch.setattr(training_service, "_send_training", sent.append)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        first = services.models_ensure()
    with django_capture_on_commit_callbacks() as again:
        second = services.models_ensure()

    assert [(e.kind, e.outcome) for e in first] == [("titanic", "queued"), ("mnist", "quick-start-queued")]
    assert len(callbacks) == 3
    assert [e.outcome for e in second] == ["in-progress", "in-progress"]
    assert len(again) == 0
    quick, mnist = ModelVersion.objects.filter(kind="mnist").order_by("version")
    assert quick.quick_start and quick.architecture == "mlp" and quick.training_options["epochs"] == 3
    assert quick.training_options["overrides"] == {"hidden_layer_sizes": [256]}
    assert not mnist.quick_start
    assert mnist.architecture == "cnn" and mnist.training_options["epochs"] == 3
    assert mnist.status == ModelVersion.Status.PENDING
    # The quick-start model is sent to the training queue before the full one, so that a worker takes it first.
    assert sent.index(quick.pk) < sent.index(mnist.pk)


def test_ensure_activates_the_latest_ready_version_instead_of_training(active_titanic, active_mnist):
    ModelVersion.objects.filter(pk=active_titanic.pk).update(is_active=False)

    ensured = services.models_ensure()

    assert [(e.kind, e.outcome) for e in ensured] == [("titanic", "activated"), ("mnist", "active")]
    assert selectors.model_version_active(kind="titanic").pk == active_titanic.pk


def test_predicting_without_an_active_model_says_so_and_what_is_happening():
    services.model_version_request(kind="titanic", enqueue=False)

    with pytest.raises(selectors.NoActiveModel, match="version 1 is waiting for a worker"):
        predictions.titanic_predict(
            passenger={
                "pclass": 1,
                "sex": "female",
                "age": 30,
                "sibsp": 0,
                "parch": 0,
                "fare": 80,
                "embarked": "C",
            }
        )


def test_an_invalid_passenger_names_every_bad_field(active_titanic):
    with pytest.raises(predictions.PassengerInvalid) as raised:
        predictions.titanic_predict(passenger={"pclass": 7, "sex": "robot", "sibsp": 0, "parch": 0})

    assert set(raised.value.details["errors"]) >= {"pclass", "sex", "age", "fare", "embarked"}


def test_a_changed_model_file_is_refused_rather_than_served(active_titanic):
    with active_titanic.artifact.open("wb") as handle:
        handle.write(b"not the model")

    with pytest.raises(selectors.ArtifactUnreadable, match="does not match its recorded hash"):
        selectors.active_model(kind="titanic")
