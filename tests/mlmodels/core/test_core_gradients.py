"""Finite-difference checks of every layer's and loss's backward pass (in float64)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from mlmodels.core.conv import Conv2D, MaxPool2D
from mlmodels.core.layers import GELU, BatchNorm1D, BatchNorm2D, Dense, Dropout, Flatten, Layer, ReLU, Tanh
from mlmodels.core.losses import SoftmaxCrossEntropy
from mlmodels.core.network import Sequential

EPS = 1e-6


def numerical_gradient(
    f: Callable[[], float], array: np.ndarray, n_checks: int, rng: np.random.Generator
) -> tuple:
    """Central differences of ``f`` with respect to ``n_checks`` random entries of ``array`` (in place)."""
    flat = array.reshape(-1)
    positions = rng.choice(flat.size, size=min(n_checks, flat.size), replace=False)
    estimates = []
    for position in positions:
        original = flat[position]
        flat[position] = original + EPS
        plus = f()
        flat[position] = original - EPS
        minus = f()
        flat[position] = original
        estimates.append((plus - minus) / (2 * EPS))
    return positions, np.array(estimates)


def assert_gradients_close(analytic: np.ndarray, numeric: np.ndarray, rtol: float = 1e-5) -> None:
    # The absolute floor covers entries that are (near) zero analytically, where differences are noise.
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=1e-7)


def check_layer(
    layer: Layer, input_shape: tuple, *, batch: int = 4, seed: int = 0, reseed_rng: bool = False
) -> None:
    rng = np.random.default_rng(seed)
    layer.build(input_shape, rng=np.random.default_rng(seed + 1), dtype=np.float64)
    x = rng.standard_normal((batch, *input_shape))
    upstream = rng.standard_normal((batch, *layer.output_shape_))

    def loss() -> float:
        if reseed_rng:
            layer._rng = np.random.default_rng(99)  # the same dropout mask on every call
        return float(np.sum(layer.forward(x, training=True) * upstream))

    loss()
    grad_x = layer.backward(upstream.copy())
    positions, numeric = numerical_gradient(loss, x, 25, rng)
    assert_gradients_close(grad_x.reshape(-1)[positions], numeric)

    for name, value in layer.params.items():
        loss()
        layer.backward(upstream.copy())
        analytic = layer.grads[name].copy()
        positions, numeric = numerical_gradient(loss, value, 25, rng)
        assert_gradients_close(analytic.reshape(-1)[positions], numeric)


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (Dense(7), (5,)),
        (Dense(3, init="glorot", use_bias=False), (6,)),
        (ReLU(), (9,)),
        (Tanh(), (9,)),
        (GELU(), (9,)),
        (Flatten(), (3, 4, 2)),
        (BatchNorm1D(), (6,)),
        (BatchNorm2D(), (5, 5, 3)),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Layer) else str(v),
)
def test_layer_gradients_match_finite_differences(layer: Layer, shape: tuple) -> None:
    check_layer(layer, shape, batch=6)


def test_dropout_gradient_matches_finite_differences_for_a_fixed_mask() -> None:
    check_layer(Dropout(0.4), (12,), reseed_rng=True)


@pytest.mark.parametrize(
    ("kwargs", "shape"),
    [
        ({"filters": 4, "kernel_size": 3, "stride": 1, "padding": 1}, (7, 7, 2)),
        ({"filters": 3, "kernel_size": 3, "stride": 2, "padding": 1}, (8, 7, 2)),
        ({"filters": 2, "kernel_size": (2, 3), "stride": (1, 2), "padding": (0, 1)}, (6, 7, 3)),
        ({"filters": 5, "kernel_size": 5, "stride": 1, "padding": "same", "use_bias": False}, (6, 6, 1)),
    ],
)
def test_conv2d_gradients_with_padding_and_stride(kwargs: dict, shape: tuple) -> None:
    check_layer(Conv2D(**kwargs), shape, batch=3)


@pytest.mark.parametrize(
    ("kwargs", "shape"),
    [
        ({"pool_size": 2}, (6, 6, 3)),
        ({"pool_size": 2}, (7, 5, 2)),
        ({"pool_size": 3, "stride": 2}, (7, 7, 2)),
        ({"pool_size": (2, 3), "stride": 1}, (5, 6, 1)),
    ],
)
def test_maxpool_gradients_including_overlapping_windows(kwargs: dict, shape: tuple) -> None:
    check_layer(MaxPool2D(**kwargs), shape, batch=3)


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ([[0, 0], [0, 0]], [[1, 0], [0, 0]]),
        ([[0, 1], [1, 1]], [[0, 1], [0, 0]]),
        ([[0, 0], [1, 1]], [[0, 0], [1, 0]]),
        ([[0, 0], [0, 1]], [[0, 0], [0, 1]]),
    ],
)
def test_maxpool_sends_the_gradient_to_the_first_maximum_only(window: list, expected: list) -> None:
    pool = MaxPool2D(2)
    pool.build((2, 2, 1), rng=np.random.default_rng(0), dtype=np.float64)
    x = np.array(window, dtype=np.float64).reshape(1, 2, 2, 1)

    pool.forward(x, training=True)
    grad = pool.backward(np.ones((1, 1, 1, 1)))

    assert grad[0, :, :, 0].tolist() == expected


def test_overlapping_maxpool_with_ties_takes_the_first_maximum_per_window() -> None:
    pool = MaxPool2D(3, stride=1)
    pool.build((3, 4, 1), rng=np.random.default_rng(0), dtype=np.float64)
    x = np.zeros((1, 3, 4, 1))

    pool.forward(x, training=True)
    grad = pool.backward(np.ones((1, 1, 2, 1)))

    assert grad[0, :, :, 0].tolist() == [[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_softmax_cross_entropy_gradient(label_smoothing: float) -> None:
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((5, 4)) * 3
    targets = np.array([0, 3, 1, 1, 2])
    loss = SoftmaxCrossEntropy(label_smoothing=label_smoothing)

    loss.forward(logits, targets)
    analytic = loss.backward()
    positions, numeric = numerical_gradient(lambda: loss.forward(logits, targets), logits, 20, rng)

    assert_gradients_close(analytic.reshape(-1)[positions], numeric)


def test_cross_entropy_is_stable_for_huge_logits() -> None:
    loss = SoftmaxCrossEntropy()

    value = loss.forward(np.array([[1000.0, -1000.0], [-1000.0, 1000.0]]), np.array([0, 0]))

    assert np.isfinite(value) and value == pytest.approx(1000.0)


def test_whole_network_gradient_through_shared_flat_buffers() -> None:
    rng = np.random.default_rng(5)
    network = Sequential(
        [
            Conv2D(3, 3, stride=1, padding=1),
            BatchNorm2D(),
            MaxPool2D(2),
            ReLU(),
            Conv2D(4, 3, stride=2, padding=1),
            Flatten(),
            Dense(6),
            BatchNorm1D(),
            Tanh(),
            Dense(3),
        ]
    )
    network.build((6, 6, 2), rng=np.random.default_rng(1), dtype=np.float64)
    network.layers[0].needs_input_grad = True  # also check the input gradient of the first layer
    x = rng.standard_normal((4, 6, 6, 2))
    targets = np.array([0, 2, 1, 2])
    loss = SoftmaxCrossEntropy()

    def value() -> float:
        return loss.forward(network.forward(x, training=True), targets)

    value()
    network.backward(loss.backward())
    analytic = network.flat_grads.copy()
    positions, numeric = numerical_gradient(value, network.flat_params, 60, rng)

    assert_gradients_close(analytic[positions], numeric)
