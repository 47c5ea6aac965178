"""The MNIST training entry point on a small subset, and model-file error handling."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from mlmodels.core.exceptions import ModelFormatError
from mlmodels.core.serialization import load_metadata, load_model
from mlmodels.core.training import train_mnist


@pytest.mark.parametrize(
    ("arch", "overrides"),
    [
        ("mlp", {"hidden_layer_sizes": (32,), "batch_size": 64}),
        ("cnn", {"conv_channels": (8, 16), "dense_units": (32,), "batch_size": 32}),
    ],
)
def test_train_mnist_returns_a_complete_result(arch: str, overrides: dict, tmp_path: Path) -> None:
    rows: list[tuple[int, int, dict]] = []

    result = train_mnist(
        arch=arch,
        epochs=2,
        train_size=1500,
        validation_size=1000,
        seed=0,
        overrides=overrides,
        progress=lambda epoch, total, row: rows.append((epoch, total, dict(row))),
    )

    assert [(epoch, total) for epoch, total, _ in rows] == [(1, 2), (2, 2)]
    assert result.metrics["test_accuracy"] > 0.6
    assert result.confusion_matrix.shape == (10, 10) and result.confusion_matrix.sum() == 10000
    errors = 10000 - int(np.trace(result.confusion_matrix))
    assert result.misclassified_indices.shape == (errors,)
    assert result.metrics["test_error_count"] == errors
    assert [set(row) >= {"loss", "accuracy", "val_loss", "val_accuracy"} for row in result.history] == [
        True,
        True,
    ]
    assert result.dataset["n_fit"] == 1500 and result.dataset["n_validation"] == 1000
    json.dumps(result.summary())

    path = tmp_path / "mnist.npz"
    result.save(path)
    assert load_metadata(path)["metrics"]["test_accuracy"] == result.metrics["test_accuracy"]
    images = np.random.default_rng(0).uniform(size=(3, 784)).astype(np.float32)
    assert np.array_equal(load_model(path).predict_proba(images), result.model.predict_proba(images))


def test_unknown_architecture_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown architecture"):
        train_mnist(arch="rnn", epochs=1)  # type: ignore[arg-type]


def test_a_file_that_is_not_a_model_is_rejected(tmp_path: Path) -> None:
    np.savez(tmp_path / "plain.npz", weights=np.zeros(3))

    with pytest.raises(ModelFormatError, match="no metadata"):
        load_model(tmp_path / "plain.npz")
    with pytest.raises(ModelFormatError):
        load_model(io.BytesIO(b"not a zip file"))


def test_a_model_file_naming_an_unknown_class_is_rejected(tmp_path: Path) -> None:
    meta = {
        "format": "mlmodels.core/npz",
        "version": 1,
        "metadata": {},
        "model": {"__kind__": "component", "class": "os.system", "params": {}, "state": {}},
    }
    np.savez(tmp_path / "evil.npz", __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))

    with pytest.raises(ModelFormatError, match="unknown component class"):
        load_model(tmp_path / "evil.npz")
