"""Layers' forward passes, optimizers, determinism, toy problems and persistence of the networks."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from mlmodels.core.augmentation import ImageAugmenter
from mlmodels.core.conv import Conv2D, MaxPool2D
from mlmodels.core.layers import BatchNorm2D, Dense, Dropout, Flatten, ReLU
from mlmodels.core.linear import LogisticRegression
from mlmodels.core.network import Sequential
from mlmodels.core.neural_net import CNNClassifier, MLPClassifier, NeuralNetClassifier
from mlmodels.core.optimizers import SGD, Adam, scheduled_learning_rate
from mlmodels.core.serialization import load_model, model_from_bytes, model_to_bytes, save_model


def xor_data(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 2))
    return X, (X[:, 0] * X[:, 1] > 0).astype(int)


def image_data(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bright blob in the top or bottom half of a 10x10 image."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.uniform(0, 0.3, (n, 10, 10, 1)).astype(np.float32)
    rows = np.where(y == 1, rng.integers(1, 4, n), rng.integers(6, 9, n))
    cols = rng.integers(1, 9, n)
    X[np.arange(n), rows, cols, 0] += 1.0
    return X, y


def small_cnn(**kwargs: object) -> CNNClassifier:
    params = {
        "conv_channels": (4, 6),
        "dense_units": (8,),
        "input_shape": (10, 10, 1),
        "max_epochs": 3,
        "batch_size": 32,
    }
    params.update(kwargs)
    return CNNClassifier(**params)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- forward passes
def naive_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    n, h, wd, _c = x.shape
    kh, kw, _, f = w.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, oh, ow, f))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            out[:, i, j, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2])) + b
    return out


@pytest.mark.parametrize(("stride", "pad"), [(1, 0), (1, 1), (2, 1), (2, 2)])
def test_conv2d_forward_matches_a_direct_loop(stride: int, pad: int) -> None:
    rng = np.random.default_rng(0)
    conv = Conv2D(3, 3, stride=stride, padding=pad)
    conv.build((7, 8, 2), rng=rng, dtype=np.float64)
    conv.params["b"][...] = rng.standard_normal(3)
    x = rng.standard_normal((2, 7, 8, 2))

    out = conv.forward(x, training=False)

    np.testing.assert_allclose(
        out, naive_conv(x, conv.params["W"], conv.params["b"], stride, pad), atol=1e-12
    )
    assert out.shape[1:] == conv.output_shape_


def test_maxpool_forward_matches_a_direct_loop() -> None:
    rng = np.random.default_rng(1)
    pool = MaxPool2D(3, stride=2)
    pool.build((7, 7, 2), rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 7, 7, 2))

    out = pool.forward(x, training=False)

    expected = np.array(
        [[x[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3, :].max(axis=(1, 2)) for j in range(3)] for i in range(3)]
    )
    np.testing.assert_allclose(out, expected.transpose(2, 0, 1, 3))


def test_batchnorm_uses_batch_statistics_in_training_and_running_ones_in_evaluation() -> None:
    rng = np.random.default_rng(2)
    bn = BatchNorm2D(momentum=1.0)
    bn.build((4, 4, 3), rng=rng, dtype=np.float64)
    x = rng.normal(5.0, 2.0, (8, 4, 4, 3))

    train_out = bn.forward(x, training=True)
    eval_out = bn.forward(x, training=False)

    np.testing.assert_allclose(train_out.mean(axis=(0, 1, 2)), 0.0, atol=1e-12)
    np.testing.assert_allclose(train_out.std(axis=(0, 1, 2)), 1.0, atol=1e-4)
    np.testing.assert_allclose(bn.buffers["running_mean"], x.mean(axis=(0, 1, 2)))
    np.testing.assert_allclose(bn.buffers["running_var"], x.var(axis=(0, 1, 2), ddof=1))
    assert not np.allclose(train_out, eval_out)


def test_dropout_scales_kept_units_and_is_identity_in_evaluation() -> None:
    layer = Dropout(0.25)
    layer.build((10_000,), rng=np.random.default_rng(3), dtype=np.float32)
    x = np.ones((4, 10_000), dtype=np.float32)

    out = layer.forward(x, training=True)

    np.testing.assert_allclose(np.unique(out), [0.0, 1 / 0.75], rtol=1e-6)
    assert abs(float((out == 0).mean()) - 0.25) < 0.01
    assert layer.forward(x, training=False) is x


def test_float32_is_kept_through_forward_backward_and_update() -> None:
    network = Sequential([Conv2D(4, 3, padding=1), BatchNorm2D(), MaxPool2D(2), ReLU(), Flatten(), Dense(3)])
    network.build((8, 8, 1), rng=np.random.default_rng(0), dtype=np.float32)
    x = np.random.default_rng(1).standard_normal((5, 8, 8, 1)).astype(np.float32)
    optimizer = Adam()
    optimizer.setup(network.flat_params, network.n_decay_)

    out = network.forward(x, training=True)
    network.backward(out)
    optimizer.step(network.flat_params, network.flat_grads, 1e-3)

    assert out.dtype == np.float32
    assert network.flat_params.dtype == np.float32 and network.flat_grads.dtype == np.float32
    assert all(
        v.dtype == np.float32
        for layer in network.layers
        for v in (*layer.params.values(), *layer.buffers.values())
    )


# ----------------------------------------------------------------------------------- optimizers
# End points of PyTorch's own optimizers on the same starts and gradients (data/make_optimizer_reference.py)
OPTIMIZER_REFERENCE = json.loads((Path(__file__).parent / "data" / "optimizer_reference.json").read_text())


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_matches_pytorch(nesterov: bool) -> None:
    rng = np.random.default_rng(4)
    start = rng.standard_normal(6).astype(np.float32)
    grads = [rng.standard_normal(6).astype(np.float32) for _ in range(4)]
    params = start.copy()
    sgd = SGD(momentum=0.9, nesterov=nesterov, weight_decay=0.01)
    sgd.setup(params, n_decay=4)  # weight decay on the first four (torch: on the "w" group only)

    for grad in grads:
        sgd.step(params, grad.copy(), 0.1)

    expected = OPTIMIZER_REFERENCE["sgd"]["nesterov" if nesterov else "plain"]
    np.testing.assert_allclose(params, np.asarray(expected, dtype=np.float32), rtol=1e-5)


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_matches_pytorch(decoupled: bool) -> None:
    rng = np.random.default_rng(5)
    start = rng.standard_normal(70_000).astype(np.float32)  # more than one update chunk
    grads = [rng.standard_normal(70_000).astype(np.float32) for _ in range(3)]
    params = start.copy()
    adam = Adam(weight_decay=0.05, decoupled=decoupled)  # torch.optim.AdamW when decoupled, else Adam
    adam.setup(params, n_decay=70_000)

    for grad in grads:
        adam.step(params, grad.copy(), 0.01)

    indices = OPTIMIZER_REFERENCE["adam_indices"]
    expected = OPTIMIZER_REFERENCE["adam"]["decoupled" if decoupled else "coupled"]
    assert len(indices) > 100
    np.testing.assert_allclose(params[indices], np.asarray(expected, dtype=np.float32), rtol=1e-5, atol=1e-6)


def test_learning_rate_schedules() -> None:
    cosine = [scheduled_learning_rate(1.0, p, schedule="cosine", total_epochs=10) for p in (0, 5, 10)]
    step = [
        scheduled_learning_rate(1.0, p, schedule="step", total_epochs=10, step_epochs=3, gamma=0.5)
        for p in (0, 3, 7)
    ]
    warm = scheduled_learning_rate(1.0, 0.5, schedule="constant", total_epochs=10, warmup_epochs=1.0)

    assert cosine == pytest.approx([1.0, 0.5, 0.0])
    assert step == pytest.approx([1.0, 0.5, 0.25])
    assert 0.4 < warm < 0.6


# ----------------------------------------------------------------------------------- estimators
def test_mlp_learns_xor_where_logistic_regression_cannot() -> None:
    X, y = xor_data()
    X_test, y_test = xor_data(seed=1)

    mlp = MLPClassifier((16, 16), learning_rate=0.01, max_epochs=40, batch_size=32, random_state=0).fit(X, y)
    linear = LogisticRegression().fit(X, y)

    assert mlp.score(X_test, y_test) > 0.95
    assert linear.score(X_test, y_test) < 0.65


@pytest.mark.parametrize("activation", ["tanh", "gelu"])
def test_mlp_with_other_activations_and_sgd_learns_xor(activation: str) -> None:
    X, y = xor_data()

    model = MLPClassifier(
        (16, 16),
        activation=activation,
        optimizer="sgd",
        learning_rate=0.1,
        max_epochs=60,
        batch_size=32,
        lr_schedule="step",
        lr_step_epochs=40,
        random_state=0,
        early_stopping=False,
    ).fit(X, y)

    assert model.score(X, y) > 0.93


def test_same_seed_gives_the_same_weights_and_another_seed_does_not() -> None:
    X, y = xor_data(200)

    first = MLPClassifier((8,), dropout=0.1, max_epochs=3, random_state=7).fit(X, y)
    second = MLPClassifier((8,), dropout=0.1, max_epochs=3, random_state=7).fit(X, y)
    other = MLPClassifier((8,), dropout=0.1, max_epochs=3, random_state=8).fit(X, y)

    assert np.array_equal(first.network_.flat_params, second.network_.flat_params)
    assert first.history_[-1]["loss"] == second.history_[-1]["loss"]
    assert not np.array_equal(first.network_.flat_params, other.network_.flat_params)


def test_cnn_same_seed_gives_the_same_weights_with_augmentation() -> None:
    X, y = image_data()
    augmenter = ImageAugmenter((10, 10, 1), max_shift=1.0, elastic_alpha=0.5)

    first = small_cnn(random_state=3, augmentation=augmenter, max_epochs=2).fit(X, y)
    second = small_cnn(random_state=3, augmentation=augmenter, max_epochs=2).fit(X, y)

    assert np.array_equal(first.network_.flat_params, second.network_.flat_params)


def test_cnn_learns_a_spatial_pattern_and_reports_history() -> None:
    X, y = image_data(400)
    calls: list[tuple[int, int]] = []

    model = small_cnn(max_epochs=6, learning_rate=3e-3, random_state=0).fit(
        X, y, progress=lambda epoch, total, row: calls.append((epoch, total))
    )

    assert model.score(X, y) > 0.9
    assert calls == [(e, 6) for e in range(1, model.n_iter_ + 1)]
    assert set(model.history_[0]) >= {
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "learning_rate",
        "seconds",
    }


def test_generic_network_accepts_a_custom_layer_stack_without_modifying_it() -> None:
    X, y = xor_data(300)
    layers = [Dense(12), ReLU(), Dense(2)]

    model = NeuralNetClassifier(layers, learning_rate=0.02, max_epochs=30, random_state=0).fit(X, y)

    assert model.score(X, y) > 0.9
    assert not hasattr(layers[0], "params")


def test_early_stopping_stops_and_restores_the_best_epoch() -> None:
    X, y = xor_data(300)

    model = MLPClassifier((4,), max_epochs=200, n_iter_no_change=3, learning_rate=0.05, random_state=0).fit(
        X, y
    )

    assert model.n_iter_ < 200
    best = max(r["val_accuracy"] for r in model.history_)
    assert model.history_[model.best_epoch_ - 1]["val_accuracy"] == best


@pytest.mark.parametrize("make", [lambda: MLPClassifier((8,), dropout=0.2, batch_norm=True), small_cnn])
def test_saved_network_gives_identical_predictions(make: object, tmp_path: object) -> None:
    model = make()  # type: ignore[operator]
    if isinstance(model, CNNClassifier):
        X, y = image_data(120)
    else:
        X, y = xor_data(200)
    model.set_params(max_epochs=2, random_state=0).fit(X, y)
    path = tmp_path / "model.npz"  # type: ignore[operator]

    save_model(model, path, metadata={"note": "test"})
    loaded = load_model(path)

    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.get_params().keys() == model.get_params().keys()
    assert loaded.history_ == model.history_
    with np.load(path, allow_pickle=False) as archive:
        assert "__meta__" in archive.files


def test_model_bytes_round_trip_keeps_training_ability() -> None:
    X, y = xor_data(200)
    model = MLPClassifier((8,), max_epochs=2, random_state=0).fit(X, y)

    restored = model_from_bytes(model_to_bytes(model))
    restored.fit(X, y)

    assert np.array_equal(restored.network_.flat_params, model.fit(X, y).network_.flat_params)


def test_conv_scratch_memory_is_bounded_by_the_batch() -> None:
    X, y = image_data(120)

    model = small_cnn(max_epochs=1, batch_size=16, random_state=0).fit(X, y)

    conv = model.network_.layers[0]
    assert conv._scratch["cols"].shape[0] <= 16


def test_concurrent_predictions_match_sequential_ones() -> None:
    X, y = image_data(300)
    model = small_cnn(max_epochs=1, random_state=0).fit(X, y)
    chunks = [np.ascontiguousarray(X[i::6]) for i in range(6)]
    expected = [model.predict_proba(chunk) for chunk in chunks]

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(model.predict_proba, chunks * 20))

    for index, result in enumerate(results):
        assert np.array_equal(result, expected[index % 6])


def test_input_shape_mismatch_is_reported() -> None:
    X, y = xor_data(100)
    model = MLPClassifier((4,), max_epochs=1, random_state=0).fit(X, y)

    with pytest.raises(ValueError, match="X has 3 features, but MLPClassifier is expecting 2 features"):
        model.predict(np.zeros((2, 3)))


# --------------------------------------------------------------------------------- augmentation
def test_augmenter_with_zero_ranges_is_the_identity() -> None:
    images = np.random.default_rng(0).uniform(size=(5, 28 * 28)).astype(np.float32)
    augmenter = ImageAugmenter((28, 28), max_shift=0.0, max_rotation=0.0, max_scale=0.0)

    out = augmenter.transform(images, rng=np.random.default_rng(1))

    assert out.shape == images.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, images, atol=1e-5)


def test_augmenter_moves_digits_reproducibly_and_stays_in_range() -> None:
    images = np.zeros((64, 28, 28, 1), dtype=np.float32)
    images[:, 10:18, 12:16, 0] = 1.0
    augmenter = ImageAugmenter((28, 28, 1), max_shift=3.0, max_rotation=15.0, elastic_alpha=1.0)

    first = augmenter.transform(images, rng=np.random.default_rng(2))
    again = augmenter.transform(images, rng=np.random.default_rng(2))

    assert np.array_equal(first, again)
    assert first.min() >= 0.0 and first.max() <= 1.0 + 1e-6
    rows = np.arange(28, dtype=np.float32)[None, :, None]
    centres = (first[..., 0] * rows).sum(axis=(1, 2)) / first[..., 0].sum(axis=(1, 2))
    assert centres.std() > 0.5  # different images moved by different amounts
