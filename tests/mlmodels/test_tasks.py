import pytest

from mlmodels import services, tasks
from mlmodels.models import ModelVersion
from tests.mlmodels.conftest import TINY_MNIST, TINY_TITANIC

pytestmark = pytest.mark.django_db


def test_a_requested_version_is_trained_by_the_task_once_committed(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        requested = services.model_version_request(kind="titanic", options=TINY_TITANIC)
        assert requested.status == ModelVersion.Status.PENDING

    version = ModelVersion.objects.get(pk=requested.pk)
    assert len(callbacks) == 1
    assert version.status == ModelVersion.Status.READY
    assert version.is_active
    assert version.attempts == 1 and version.task_id  # the task's id, recorded while it trained
    assert version.progress == 1.0 and version.current_epoch == version.total_epochs == 3


def test_the_task_records_a_failure_instead_of_raising(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        requested = services.model_version_request(
            kind="mnist", options={**TINY_MNIST, "overrides": {"hidden_layer_sizes": "wide"}}
        )

    version = ModelVersion.objects.get(pk=requested.pk)
    assert version.status == ModelVersion.Status.FAILED
    assert version.error.startswith("Training failed:")


def test_the_task_of_a_deleted_version_does_nothing():
    assert tasks.train_model_version.delay(987654).get() == "deleted"


def test_the_recovery_task_reports_how_many_versions_it_touched():
    assert tasks.recover_stalled_training.delay().get() == 0
