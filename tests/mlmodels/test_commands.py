import json

import pytest
from django.core.management import CommandError, call_command

from mlmodels.models import ModelVersion

pytestmark = pytest.mark.django_db

TINY = ["--epochs", "1", "--train-size", "300", "--validation-size", "500"]
SMALL_NETWORK = json.dumps({"hidden_layer_sizes": [16], "batch_size": 64})


def test_train_titanic_records_an_active_version_and_prints_its_metrics(capsys):
    call_command("train_titanic", "--folds", "2", "--seed", "3")

    output = capsys.readouterr().out
    version = ModelVersion.objects.get(kind="titanic")
    assert version.status == ModelVersion.Status.READY and version.is_active and version.seed == 3
    assert "titanic v1 (Logistic regression): trained in" in output
    assert "Cross-validated accuracy" in output
    assert "Nested cross-validated accuracy (C chosen inside each fold)" in output
    assert "C (chosen by cross-validation)" in output and "Brier score (out of fold)" in output
    assert "is the active titanic model" in output
    assert version.training_options["C"] == "auto"


def test_train_titanic_with_a_given_c_uses_it_and_skips_the_nested_cross_validation(capsys):
    call_command("train_titanic", "--folds", "2", "--C", "0.5")

    output = capsys.readouterr().out
    version = ModelVersion.objects.get(kind="titanic")
    assert version.training_options["C"] == 0.5
    assert version.hyperparameters["steps"][2][1]["params"]["C"] == 0.5
    assert "Nested" not in output and "Brier score (out of fold)" in output


def test_train_mnist_trains_a_tiny_network_and_leaves_the_active_one_unless_asked(capsys):
    call_command("train_mnist", *TINY, "--overrides", SMALL_NETWORK)
    call_command("train_mnist", *TINY, "--overrides", SMALL_NETWORK, "--seed", "1")
    call_command("train_mnist", *TINY, "--overrides", SMALL_NETWORK, "--activate")

    output = capsys.readouterr().out
    first, second, third = ModelVersion.objects.filter(kind="mnist").order_by("version")
    assert [first.is_active, second.is_active, third.is_active] == [False, False, True]
    assert second.seed == 1
    assert first.training_options["train_size"] == 300
    assert "Test accuracy" in output
    assert "mnist v2 (Multi-layer perceptron) is not active (mnist v1 (Multi-layer perceptron) is)" in output


def test_train_mnist_reports_a_failed_training_as_an_error():
    with pytest.raises(CommandError, match="no parameter 'warp_speed'"):
        call_command("train_mnist", *TINY, "--overrides", '{"warp_speed": 9}')

    assert ModelVersion.objects.get().status == ModelVersion.Status.FAILED


def test_train_mnist_refuses_invalid_options_before_training():
    with pytest.raises(CommandError, match="epochs"):
        call_command("train_mnist", "--epochs", "0")

    assert not ModelVersion.objects.exists()


def test_ensure_models_queues_the_missing_models_and_returns(capsys, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        call_command("ensure_models")

    output = capsys.readouterr().out
    assert "titanic v1 (Logistic regression) is queued for training" in output
    assert "mnist v1 (Multi-layer perceptron, quick start) is queued for training (under a minute)" in output
    assert "mnist v2 (Multi-layer perceptron) is queued behind it and replaces it when ready" in output
    assert len(callbacks) == 3
    assert set(ModelVersion.objects.values_list("status", flat=True)) == {"PENDING"}


def test_ensure_models_without_the_quick_start_queues_the_full_model_only(
    capsys, settings, django_capture_on_commit_callbacks
):
    settings.MLMODELS_MNIST_QUICK_START = False

    with django_capture_on_commit_callbacks() as callbacks:
        call_command("ensure_models")

    output = capsys.readouterr().out
    assert "titanic v1 (Logistic regression) is queued for training" in output
    assert "mnist v1 (Multi-layer perceptron) is queued for training" in output
    assert len(callbacks) == 2
    assert not ModelVersion.objects.filter(quick_start=True).exists()


def test_ensure_models_does_nothing_when_turned_off(capsys, settings):
    settings.MLMODELS_ENSURE_ON_RUN = False

    call_command("ensure_models")

    assert "not checked" in capsys.readouterr().out
    assert not ModelVersion.objects.exists()
