"""The quick-start digits model: a first start trains a small model first so that the canvas answers at once, and
the full model queued behind it replaces it when it is at least as good."""

import dataclasses

import pytest
from django.core.management import call_command
from django.urls import reverse

from mlmodels import selectors, services
from mlmodels.core import training
from mlmodels.models import ModelVersion
from mlmodels.services.options import QUICK_START_ARCHITECTURE, QUICK_START_OPTIONS
from tests.mlmodels.conftest import TINY_MNIST

pytestmark = pytest.mark.django_db


def _train(monkeypatch, result, **arguments):
    monkeypatch.setattr(training, "train_mnist", lambda **options: result)
    return services.model_version_train_now(kind="mnist", architecture="mlp", options=TINY_MNIST, **arguments)


def _with_val_accuracy(result, value):
    return dataclasses.replace(result, metrics={**result.metrics, "val_accuracy": value})


def test_a_quick_start_model_becomes_active_where_none_is(monkeypatch, mnist_result):
    quick = _train(monkeypatch, mnist_result, quick_start=True)

    assert quick.status == ModelVersion.Status.READY and quick.quick_start
    assert selectors.model_version_active(kind="mnist").pk == quick.pk
    assert str(quick) == f"mnist v{quick.version} (Multi-layer perceptron, quick start)"


def test_the_full_model_replaces_the_quick_start_one_when_it_validates_at_least_as_well(
    monkeypatch, mnist_result
):
    quick = _train(monkeypatch, mnist_result, quick_start=True)
    full = _train(monkeypatch, mnist_result)

    active = selectors.model_version_active(kind="mnist")
    assert active.pk == full.pk and not active.quick_start
    quick.refresh_from_db()
    assert not quick.is_active and quick.status == ModelVersion.Status.READY


def test_a_full_model_that_validates_worse_leaves_the_quick_start_one_active(monkeypatch, mnist_result):
    quick = _train(monkeypatch, _with_val_accuracy(mnist_result, 0.97), quick_start=True)
    worse = _train(monkeypatch, _with_val_accuracy(mnist_result, 0.90))

    assert worse.status == ModelVersion.Status.READY and not worse.is_active
    assert selectors.model_version_active(kind="mnist").pk == quick.pk


def test_a_quick_start_model_never_replaces_an_active_model(monkeypatch, mnist_result):
    full = _train(monkeypatch, _with_val_accuracy(mnist_result, 0.90))
    quick = _train(monkeypatch, _with_val_accuracy(mnist_result, 0.99), quick_start=True)

    assert quick.status == ModelVersion.Status.READY and not quick.is_active
    assert selectors.model_version_active(kind="mnist").pk == full.pk


def test_a_full_model_does_not_replace_another_full_model_unless_asked(monkeypatch, mnist_result):
    first = _train(monkeypatch, _with_val_accuracy(mnist_result, 0.90))
    better = _train(monkeypatch, _with_val_accuracy(mnist_result, 0.99))

    assert not better.is_active
    assert selectors.model_version_active(kind="mnist").pk == first.pk


def test_ensure_queues_no_quick_start_model_once_the_kind_has_any_version(django_capture_on_commit_callbacks):
    failed = services.model_version_request(kind="mnist", enqueue=False)
    ModelVersion.objects.filter(pk=failed.pk).update(status=ModelVersion.Status.FAILED, error="killed")

    with django_capture_on_commit_callbacks():
        ensured = {e.kind: e for e in services.models_ensure()}

    assert ensured["mnist"].outcome == "queued" and not ensured["mnist"].version.quick_start
    assert not ModelVersion.objects.filter(quick_start=True).exists()


def test_train_mnist_quick_start_trains_the_quick_start_configuration(monkeypatch, mnist_result, capsys):
    asked = {}

    def train_mnist(**options):
        asked.update(options)
        return mnist_result

    monkeypatch.setattr(training, "train_mnist", train_mnist)

    call_command("train_mnist", "--quick-start", "--arch", "cnn")

    version = ModelVersion.objects.get()
    assert version.quick_start and version.architecture == QUICK_START_ARCHITECTURE
    assert asked["arch"] == "mlp" and asked["epochs"] == QUICK_START_OPTIONS["epochs"]
    assert asked["overrides"] == {"hidden_layer_sizes": (256,)}
    assert "quick start" in capsys.readouterr().out


def test_the_pages_and_the_api_say_the_quick_start_model_is_answering(
    monkeypatch, mnist_result, signed_in, client, reader_token
):
    quick = _train(monkeypatch, mnist_result, quick_start=True)
    full = services.model_version_request(kind="mnist", enqueue=False)

    page = signed_in.get(reverse("mlmodels:digits")).content.decode()
    assert "This is the small model the first start trains in seconds" in page
    assert f"{full}</a> is waiting for a worker and replaces it when ready" in page
    overview = signed_in.get(reverse("mlmodels:index")).content.decode()
    assert "quick start</span>" in overview

    listed = client.get("/api/ml/models", HTTP_AUTHORIZATION=f"Token {reader_token}").json()["versions"]
    versions = {v["id"]: v for v in listed}
    assert versions[quick.pk]["quick_start"] is True and versions[full.pk]["quick_start"] is False


def test_a_full_model_validated_on_other_digits_does_not_replace_the_quick_start_one(
    monkeypatch, mnist_result
):
    quick = _train(monkeypatch, _with_val_accuracy(mnist_result, 0.90), quick_start=True)
    other_split = dataclasses.replace(
        _with_val_accuracy(mnist_result, 0.99), dataset={**mnist_result.dataset, "n_validation": 123}
    )
    full = _train(monkeypatch, other_split)

    assert not full.is_active
    assert selectors.model_version_active(kind="mnist").pk == quick.pk


def test_after_a_rollback_to_the_quick_start_model_a_full_one_replaces_it_only_when_asked(
    monkeypatch, mnist_result
):
    quick = _train(monkeypatch, mnist_result, quick_start=True)
    _train(monkeypatch, mnist_result)  # replaces the quick-start model
    services.model_version_activate(version_id=quick.pk)  # staff roll back

    unasked = _train(monkeypatch, _with_val_accuracy(mnist_result, 0.999))
    assert not unasked.is_active
    assert selectors.model_version_active(kind="mnist").pk == quick.pk
    asked = _train(monkeypatch, mnist_result, activate=True)
    assert selectors.model_version_active(kind="mnist").pk == asked.pk


def test_a_quick_start_model_asked_to_be_activated_is(monkeypatch, mnist_result):
    full = _train(monkeypatch, mnist_result)
    quick = _train(monkeypatch, mnist_result, quick_start=True, activate=True)

    assert quick.is_active
    full.refresh_from_db()
    assert not full.is_active


def test_a_quick_start_model_queued_again_after_a_full_one_became_active_is_not_trained(
    monkeypatch, mnist_result
):
    quick = services.model_version_request(
        kind="mnist",
        architecture=QUICK_START_ARCHITECTURE,
        options=QUICK_START_OPTIONS,
        quick_start=True,
        enqueue=False,
    )
    full = _train(monkeypatch, mnist_result)
    monkeypatch.setattr(training, "train_mnist", lambda **options: pytest.fail("superseded: not trained"))

    services.model_version_train(version_id=quick.pk, task_id="task-sent-again")

    quick.refresh_from_db()
    assert quick.status == ModelVersion.Status.FAILED and "a full model became active first" in quick.error
    assert selectors.model_version_active(kind="mnist").pk == full.pk


def test_ensure_queues_the_full_model_again_when_the_one_behind_the_quick_start_model_failed(
    monkeypatch, mnist_result, django_capture_on_commit_callbacks
):
    quick = _train(monkeypatch, mnist_result, quick_start=True)
    failed = services.model_version_request(kind="mnist", enqueue=False)
    ModelVersion.objects.filter(pk=failed.pk).update(status=ModelVersion.Status.FAILED, error="time limit")

    with django_capture_on_commit_callbacks() as callbacks:
        ensured = {e.kind: e for e in services.models_ensure()}
    with django_capture_on_commit_callbacks() as again:
        second = {e.kind: e for e in services.models_ensure()}

    queued = ensured["mnist"].version
    assert ensured["mnist"].outcome == "queued" and not queued.quick_start and queued.pk != failed.pk
    assert f"{quick} is active; {queued} is queued" in ensured["mnist"].message
    assert len(callbacks) == 2  # titanic and the full digits model
    assert second["mnist"].outcome == "active" and len(again) == 0  # the full digits model is queued once
