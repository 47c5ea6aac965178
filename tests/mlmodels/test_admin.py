from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from mlmodels import services
from mlmodels.models import ModelVersion
from tests.mlmodels.conftest import TINY_TITANIC

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:mlmodels_modelversion_changelist"


def test_the_list_shows_status_progress_heartbeat_key_metric_and_refreshes_while_training(
    staff_client, active_mnist, settings
):
    training = services.model_version_request(kind="mnist", enqueue=False)
    ModelVersion.objects.filter(pk=training.pk).update(
        status="TRAINING",
        progress=0.42,
        current_epoch=5,
        total_epochs=12,
        heartbeat_at=timezone.now() - timedelta(seconds=settings.MLMODELS_TRAIN_STALE_SECONDS + 60),
    )

    page = staff_client.get(reverse(CHANGELIST)).content.decode()

    assert '<progress value="42"' in page
    assert "epoch 5 of 12" in page
    assert "stalled?" in page
    assert f"{100 * active_mnist.metrics['test_accuracy']:.2f} %" in page
    assert '<meta http-equiv="refresh"' in page
    assert reverse("admin:mlmodels_modelversion_train") in page


def test_a_failed_version_shows_its_reason_in_the_list(staff_client):
    services.model_version_train_now(kind="mnist", options={"overrides": {"turbo": True}, "train_size": 100})

    page = staff_client.get(reverse(CHANGELIST)).content.decode()

    assert "no parameter &#x27;turbo&#x27;" in page


def test_the_train_form_queues_a_version_for_the_workers(
    staff_client, staff_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = staff_client.post(
            reverse("admin:mlmodels_modelversion_train"),
            {
                "kind": "mnist",
                "architecture": "cnn",
                "epochs": "3",
                "augment": "on",
                "seed": "7",
                "penalty": "l2",
            },
        )

    version = ModelVersion.objects.get()
    assert response.status_code == 302
    assert len(callbacks) == 1  # the training task, sent once the row is committed
    assert (version.kind, version.architecture, version.status, version.seed) == (
        "mnist",
        "cnn",
        "PENDING",
        7,
    )
    assert version.training_options["epochs"] == 3 and version.training_options["augment"] is True
    assert version.created_by == staff_user


def test_a_titanic_version_trained_from_admin_becomes_active(
    staff_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(
            reverse("admin:mlmodels_modelversion_train"),
            {
                "kind": "titanic",
                "architecture": "mlp",
                "C": "0.5",
                "penalty": "l1",
                "seed": "0",
                "activate": "on",
            },
        )

    version = ModelVersion.objects.get()
    assert version.status == ModelVersion.Status.READY and version.is_active
    assert version.training_options["C"] == 0.5 and version.training_options["penalty"] == "l1"


def test_the_activate_action_rolls_back_to_an_older_version(staff_client, active_titanic):
    newer = services.model_version_train_now(kind="titanic", options=TINY_TITANIC, activate=True)

    response = staff_client.post(
        reverse(CHANGELIST),
        {"action": "activate_action", "_selected_action": [active_titanic.pk]},
        follow=True,
    )

    newer.refresh_from_db()
    active_titanic.refresh_from_db()
    assert active_titanic.is_active and not newer.is_active
    assert "is now the active Titanic survival model" in response.content.decode()


def test_the_activate_action_needs_exactly_one_version(staff_client, active_titanic):
    other = services.model_version_train_now(kind="titanic", options=TINY_TITANIC)

    response = staff_client.post(
        reverse(CHANGELIST),
        {"action": "activate_action", "_selected_action": [active_titanic.pk, other.pk]},
        follow=True,
    )

    assert "Select exactly one version" in response.content.decode()


def test_the_change_page_shows_metrics_pictures_and_an_activate_button(staff_client, active_titanic):
    older = active_titanic
    services.model_version_train_now(kind="titanic", options=TINY_TITANIC, activate=True)

    page = staff_client.get(reverse("admin:mlmodels_modelversion_change", args=[older.pk])).content.decode()
    response = staff_client.post(reverse("admin:mlmodels_modelversion_activate", args=[older.pk]))

    assert "Cross-validated accuracy" in page
    assert f'src="/models/versions/{older.pk}/curves.png"' in page
    assert f'src="/models/versions/{older.pk}/confusion.png"' in page
    assert "Activate this version" in page
    assert response.status_code == 302
    older.refresh_from_db()
    assert older.is_active


def test_the_active_version_cannot_be_deleted_from_admin(staff_client, active_titanic):
    response = staff_client.get(reverse("admin:mlmodels_modelversion_delete", args=[active_titanic.pk]))

    assert response.status_code == 403


def test_a_reader_cannot_reach_the_admin(client, reader):
    client.force_login(reader)

    assert client.get(reverse(CHANGELIST)).status_code == 302
