"""Neural-network classifiers: a generic one over any layer stack, an MLP and a CNN built from it."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mlmodels.core.augmentation import ImageAugmenter
from mlmodels.core.base import BaseEstimator, ClassifierMixin
from mlmodels.core.conv import Conv2D, MaxPool2D
from mlmodels.core.layers import (
    GELU,
    Array,
    BatchNorm1D,
    BatchNorm2D,
    Dense,
    Dropout,
    Flatten,
    Init,
    Layer,
    ReLU,
    Tanh,
)
from mlmodels.core.losses import SoftmaxCrossEntropy, log_softmax, softmax
from mlmodels.core.model_selection import train_test_split_indices
from mlmodels.core.network import Sequential
from mlmodels.core.optimizers import SGD, Adam, Optimizer, ScheduleName, scheduled_learning_rate
from mlmodels.core.validation import check_array, check_classification_targets

ProgressCallback = Callable[[int, int, Mapping[str, float]], None]
Activation = Literal["relu", "tanh", "gelu"]


class NeuralNetClassifier(ClassifierMixin, BaseEstimator):
    """Softmax classifier trained by mini-batch SGD/Adam over any stack of :mod:`layers <mlmodels.core.layers>`.

    ``layers`` must end with a ``Dense`` layer with one unit per class; it is deep-copied in ``fit`` so
    the constructor argument is never modified. ``X`` is validated as scikit-learn validates it (finite,
    real, 2-D or already ``(n, *input_shape)``, at least one feature) and each row reshaped to
    ``input_shape`` (``input_shape=None`` keeps rows flat); ``y`` must hold class labels, not continuous
    values. With ``normalize_inputs`` a single mean and standard deviation
    of the training inputs are learned and applied before the network (after augmentation).

    Validation: ``fit(..., validation_data=(X, y))``, or with ``early_stopping`` a stratified
    ``validation_fraction`` of the training set. Training stops after ``n_iter_no_change`` epochs whose
    validation score does not beat the best by ``tol``, and ``restore_best_weights`` returns to the best
    epoch. ``monitor`` picks the validation score: accuracy (ties broken by loss, the default, as in
    scikit-learn) or loss. The learning-rate schedule is applied per step over ``max_epochs``.

    Fitted attributes: ``classes_``, ``network_``, ``history_`` (one dict per epoch: ``epoch``, ``loss``,
    ``accuracy`` measured on the training batches as trained, ``val_loss``, ``val_accuracy``,
    ``learning_rate``, ``seconds``), ``loss_curve_``, ``validation_scores_``, ``n_iter_`` (epochs run),
    ``best_epoch_``, ``input_mean_``, ``input_std_``.
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        *,
        optimizer: Literal["adam", "sgd"] = "adam",
        learning_rate: float = 1e-3,
        momentum: float = 0.9,
        nesterov: bool = True,
        beta1: float = 0.9,
        beta2: float = 0.999,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        batch_size: int = 128,
        max_epochs: int = 20,
        lr_schedule: ScheduleName = "cosine",
        warmup_epochs: float = 0.0,
        lr_step_epochs: int = 10,
        lr_gamma: float = 0.1,
        min_lr_factor: float = 0.0,
        label_smoothing: float = 0.0,
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 5,
        monitor: Literal["val_accuracy", "val_loss"] = "val_accuracy",
        tol: float = 1e-4,
        restore_best_weights: bool = True,
        normalize_inputs: bool = True,
        augmentation: ImageAugmenter | None = None,
        input_shape: tuple[int, ...] | None = None,
        random_state: int | None = None,
        dtype: str = "float32",
    ) -> None:
        self.layers = layers
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.nesterov = nesterov
        self.beta1 = beta1
        self.beta2 = beta2
        self.weight_decay = weight_decay
        self.decoupled_weight_decay = decoupled_weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.lr_schedule = lr_schedule
        self.warmup_epochs = warmup_epochs
        self.lr_step_epochs = lr_step_epochs
        self.lr_gamma = lr_gamma
        self.min_lr_factor = min_lr_factor
        self.label_smoothing = label_smoothing
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.monitor = monitor
        self.tol = tol
        self.restore_best_weights = restore_best_weights
        self.normalize_inputs = normalize_inputs
        self.augmentation = augmentation
        self.input_shape = input_shape
        self.random_state = random_state
        self.dtype = dtype

    # ------------------------------------------------------------------------------ architecture
    def _make_layers(self, n_classes: int, input_shape: tuple[int, ...]) -> list[Layer]:
        return copy.deepcopy(list(self.layers))

    # ----------------------------------------------------------------------------------- fitting
    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        *,
        validation_data: tuple[ArrayLike, ArrayLike] | None = None,
        progress: ProgressCallback | None = None,
    ) -> NeuralNetClassifier:
        """Train from scratch; ``progress(epoch, max_epochs, history_row)`` is called after every epoch."""
        dtype = np.dtype(self.dtype)
        inputs = self._reshape(X, dtype)
        labels = check_classification_targets(y, inputs.shape[0])
        classes, codes = np.unique(labels, return_inverse=True)
        if classes.shape[0] < 2:
            raise ValueError(f"y has {classes.shape[0]} class; a classifier needs at least two")
        n_features = int(np.prod(inputs.shape[1:]))
        init_rng, shuffle_rng, augment_rng, split_rng = np.random.default_rng(self.random_state).spawn(4)

        val_inputs: Array | None = None
        val_codes: NDArray[np.intp] | None = None
        if validation_data is not None:
            val_inputs = self._reshape(validation_data[0], dtype, example_shape=inputs.shape[1:])
            val_codes = _encode(
                check_classification_targets(validation_data[1], val_inputs.shape[0]), classes
            )
        elif self.early_stopping:
            seed = int(split_rng.integers(2**63))
            train_idx, val_idx = train_test_split_indices(
                codes, test_size=self.validation_fraction, random_state=seed
            )
            val_inputs, val_codes = inputs[val_idx], codes[val_idx]
            inputs, codes = inputs[train_idx], codes[train_idx]

        self.classes_ = classes
        self.n_features_in_ = n_features
        if self.normalize_inputs:
            self.input_mean_ = float(inputs.mean(dtype=np.float64))
            self.input_std_ = float(inputs.std(dtype=np.float64)) or 1.0
        else:
            self.input_mean_, self.input_std_ = 0.0, 1.0
        network = Sequential(self._make_layers(classes.shape[0], inputs.shape[1:]))
        output_shape = network.build(inputs.shape[1:], rng=init_rng, dtype=dtype)
        if output_shape != (classes.shape[0],):
            raise ValueError(f"the network outputs {output_shape}, expected ({classes.shape[0]},) logits")
        self.network_ = network
        loss = SoftmaxCrossEntropy(label_smoothing=self.label_smoothing)
        optimizer = self._make_optimizer()
        optimizer.setup(network.flat_params, network.n_decay_)

        self.history_: list[dict[str, float]] = []
        best: tuple[float, float] = (-np.inf, np.inf)
        best_epoch, best_params, best_buffers, stale = 0, None, None, 0
        n = inputs.shape[0]
        for epoch in range(1, self.max_epochs + 1):
            started = time.perf_counter()
            order = shuffle_rng.permutation(n)
            total_loss, correct = 0.0, 0
            learning_rate = self.learning_rate
            for start in range(0, n, self.batch_size):
                index = order[start : start + self.batch_size]
                batch = inputs[index]
                if self.augmentation is not None:
                    batch = self.augmentation.transform(batch, rng=augment_rng)
                batch = self._normalize(batch)
                learning_rate = self._learning_rate((epoch - 1) + start / n)
                logits = network.forward(batch, training=True)
                batch_codes = codes[index]
                total_loss += loss.forward(logits, batch_codes) * index.shape[0]
                correct += int(np.count_nonzero(np.argmax(logits, axis=1) == batch_codes))
                network.backward(loss.backward())
                optimizer.step(network.flat_params, network.flat_grads, learning_rate)
                if not np.isfinite(total_loss):
                    raise FloatingPointError(f"training diverged in epoch {epoch}; lower the learning rate")
            row: dict[str, float] = {
                "epoch": epoch,
                "loss": total_loss / n,
                "accuracy": correct / n,
                "learning_rate": learning_rate,
            }
            if val_inputs is not None and val_codes is not None:
                val_logits = self._logits(val_inputs)
                row["val_loss"] = float(
                    -np.mean(log_softmax(val_logits)[np.arange(val_codes.shape[0]), val_codes])
                )
                row["val_accuracy"] = float(np.mean(np.argmax(val_logits, axis=1) == val_codes))
            row["seconds"] = time.perf_counter() - started
            self.history_.append(row)
            if progress is not None:
                progress(epoch, self.max_epochs, row)
            if "val_loss" in row:
                if self._improved(row, best):
                    best, best_epoch, stale = (row["val_accuracy"], row["val_loss"]), epoch, 0
                    if self.restore_best_weights:
                        best_params, best_buffers = network.flat_params.copy(), network.buffers_snapshot()
                else:
                    stale += 1
                if self.early_stopping and stale >= self.n_iter_no_change:
                    break
        if best_params is not None and best_buffers is not None and best_epoch != len(self.history_):
            network.flat_params[...] = best_params
            network.restore_buffers(best_buffers)
        self.n_iter_ = len(self.history_)
        self.best_epoch_ = best_epoch or self.n_iter_
        self.loss_curve_ = [r["loss"] for r in self.history_]
        self.validation_scores_ = [r["val_accuracy"] for r in self.history_ if "val_accuracy" in r]
        return self

    def _improved(self, row: Mapping[str, float], best: tuple[float, float]) -> bool:
        """Better validation score by more than ``tol``, or an equal score with a lower loss."""
        accuracy, loss = row["val_accuracy"], row["val_loss"]
        if self.monitor == "val_loss":
            return loss < best[1] - self.tol
        if self.monitor != "val_accuracy":
            raise ValueError(f"monitor must be 'val_accuracy' or 'val_loss', got {self.monitor!r}")
        return accuracy > best[0] + self.tol or (abs(accuracy - best[0]) <= self.tol and loss < best[1])

    def _make_optimizer(self) -> Optimizer:
        if self.optimizer == "adam":
            return Adam(
                beta1=self.beta1,
                beta2=self.beta2,
                weight_decay=self.weight_decay,
                decoupled=self.decoupled_weight_decay,
            )
        if self.optimizer == "sgd":
            return SGD(momentum=self.momentum, nesterov=self.nesterov, weight_decay=self.weight_decay)
        raise ValueError(f"unknown optimizer {self.optimizer!r}; use 'adam' or 'sgd'")

    def _learning_rate(self, progress: float) -> float:
        return scheduled_learning_rate(
            self.learning_rate,
            progress,
            schedule=self.lr_schedule,
            total_epochs=self.max_epochs,
            warmup_epochs=self.warmup_epochs,
            step_epochs=self.lr_step_epochs,
            gamma=self.lr_gamma,
            min_factor=self.min_lr_factor,
        )

    def _example_shape(self, n_features: int) -> tuple[int, ...]:
        """The shape one flattened example of ``n_features`` values is read as."""
        return tuple(self.input_shape) if self.input_shape is not None else (n_features,)

    def _reshape(
        self, X: ArrayLike, dtype: np.dtype[Any], *, example_shape: tuple[int, ...] | None = None
    ) -> Array:
        """``X`` validated (:func:`check_array`) and read as examples of ``example_shape``.

        ``X`` is 2-D (one flattened example per row) or already ``(n, *input_shape)``.
        """
        data = check_array(X, dtype=dtype, estimator=self, allow_nd=self.input_shape is not None)
        n_features = int(np.prod(data.shape[1:]))
        shape = example_shape if example_shape is not None else self._example_shape(n_features)
        if data.shape[1:] != tuple(shape) and n_features != int(np.prod(shape)):
            raise ValueError(
                f"X has {n_features} features, but {type(self).__name__} is expecting "
                f"{int(np.prod(shape))} features as input (examples of shape {tuple(shape)})."
            )
        return np.ascontiguousarray(data.reshape((data.shape[0], *shape)))

    def _normalize(self, batch: Array) -> Array:
        if self.input_mean_ == 0.0 and self.input_std_ == 1.0:
            return batch
        out = batch - np.asarray(self.input_mean_, dtype=batch.dtype)
        out *= np.asarray(1.0 / self.input_std_, dtype=batch.dtype)
        return out

    # -------------------------------------------------------------------------------- prediction
    def _logits(self, inputs: Array) -> Array:
        chunk = max(int(self.batch_size), 256)
        outputs = [
            self.network_.forward(self._normalize(inputs[start : start + chunk]), training=False)
            for start in range(0, inputs.shape[0], chunk)
        ]
        return np.concatenate(outputs)

    def _predict_logits(self, X: ArrayLike) -> Array:
        self._check_is_fitted("network_")
        return self._logits(
            self._reshape(
                X, np.dtype(self.network_.layers[0].dtype_), example_shape=tuple(self.network_.input_shape_)
            )
        )

    def decision_function(self, X: ArrayLike) -> Array:
        """Logits, one column per entry of ``classes_``; for two classes, the log-odds of ``classes_[1]``
        (shape ``(n,)``, as scikit-learn's classifiers return)."""
        logits = self._predict_logits(X)
        if logits.shape[1] == 2:
            difference: Array = logits[:, 1] - logits[:, 0]
            return difference
        return logits

    def predict_proba(self, X: ArrayLike) -> Array:
        return softmax(self._predict_logits(X))

    def predict(self, X: ArrayLike) -> NDArray[Any]:
        logits = self._predict_logits(X)
        predicted: NDArray[Any] = self.classes_[np.argmax(logits, axis=1)]
        return predicted


class MLPClassifier(NeuralNetClassifier):
    """Multi-layer perceptron: ``[Dropout] (Dense [BatchNorm1D] activation [Dropout]) * k Dense``.

    He initialization for ReLU/GELU, Glorot for tanh; the output layer is Glorot.
    """

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] = (256,),
        *,
        activation: Activation = "relu",
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        batch_norm: bool = False,
        optimizer: Literal["adam", "sgd"] = "adam",
        learning_rate: float = 1e-3,
        momentum: float = 0.9,
        nesterov: bool = True,
        beta1: float = 0.9,
        beta2: float = 0.999,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        batch_size: int = 128,
        max_epochs: int = 20,
        lr_schedule: ScheduleName = "cosine",
        warmup_epochs: float = 0.0,
        lr_step_epochs: int = 10,
        lr_gamma: float = 0.1,
        min_lr_factor: float = 0.0,
        label_smoothing: float = 0.0,
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 5,
        monitor: Literal["val_accuracy", "val_loss"] = "val_accuracy",
        tol: float = 1e-4,
        restore_best_weights: bool = True,
        normalize_inputs: bool = True,
        augmentation: ImageAugmenter | None = None,
        input_shape: tuple[int, ...] | None = None,
        random_state: int | None = None,
        dtype: str = "float32",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.batch_norm = batch_norm
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.nesterov = nesterov
        self.beta1 = beta1
        self.beta2 = beta2
        self.weight_decay = weight_decay
        self.decoupled_weight_decay = decoupled_weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.lr_schedule = lr_schedule
        self.warmup_epochs = warmup_epochs
        self.lr_step_epochs = lr_step_epochs
        self.lr_gamma = lr_gamma
        self.min_lr_factor = min_lr_factor
        self.label_smoothing = label_smoothing
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.monitor = monitor
        self.tol = tol
        self.restore_best_weights = restore_best_weights
        self.normalize_inputs = normalize_inputs
        self.augmentation = augmentation
        self.input_shape = input_shape
        self.random_state = random_state
        self.dtype = dtype

    def _make_layers(self, n_classes: int, input_shape: tuple[int, ...]) -> list[Layer]:
        init: Init = "glorot" if self.activation == "tanh" else "he"
        layers: list[Layer] = []
        if len(input_shape) > 1:
            layers.append(Flatten())
        if self.input_dropout:
            layers.append(Dropout(self.input_dropout))
        for units in self.hidden_layer_sizes:
            layers.append(Dense(units, init=init, use_bias=not self.batch_norm))
            if self.batch_norm:
                layers.append(BatchNorm1D())
            layers.append(_activation(self.activation))
            if self.dropout:
                layers.append(Dropout(self.dropout))
        layers.append(Dense(max(n_classes, 1), init="glorot"))
        return layers


class CNNClassifier(NeuralNetClassifier):
    """Convolutional network for images (NHWC, ``input_shape=(H, W, C)``).

    Flattened images (one row of ``H * W * C`` values per image) are read with ``input_shape``; with
    ``input_shape=None`` each row of ``d`` values is a one-pixel-high strip ``(1, d, 1)``, which lets
    the CNN run on any tabular ``X`` (scikit-learn's estimator checks do that).

    Each block is ``Conv2D(same padding) MaxPool2D(2) [BatchNorm2D] ReLU``, the pooling window narrowed
    to one pixel along a side that is already one pixel wide. Pooling straight after the
    convolution means normalization and ReLU touch a quarter of the values: on two CPU cores these
    elementwise passes cost as much as the convolutions. (ReLU commutes with max-pooling exactly; batch
    norm with positive scale nearly, its statistics being taken over pooled values.) Then
    ``Flatten (Dense ReLU [Dropout]) * k Dense``.
    """

    def __init__(
        self,
        conv_channels: tuple[int, ...] = (32, 64),
        *,
        kernel_size: int = 3,
        dense_units: tuple[int, ...] = (128,),
        batch_norm: bool = True,
        dropout: float = 0.25,
        optimizer: Literal["adam", "sgd"] = "adam",
        learning_rate: float = 1e-3,
        momentum: float = 0.9,
        nesterov: bool = True,
        beta1: float = 0.9,
        beta2: float = 0.999,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        batch_size: int = 128,
        max_epochs: int = 12,
        lr_schedule: ScheduleName = "cosine",
        warmup_epochs: float = 0.0,
        lr_step_epochs: int = 10,
        lr_gamma: float = 0.1,
        min_lr_factor: float = 0.0,
        label_smoothing: float = 0.0,
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 5,
        monitor: Literal["val_accuracy", "val_loss"] = "val_accuracy",
        tol: float = 1e-4,
        restore_best_weights: bool = True,
        normalize_inputs: bool = True,
        augmentation: ImageAugmenter | None = None,
        input_shape: tuple[int, ...] | None = (28, 28, 1),
        random_state: int | None = None,
        dtype: str = "float32",
    ) -> None:
        self.conv_channels = conv_channels
        self.kernel_size = kernel_size
        self.dense_units = dense_units
        self.batch_norm = batch_norm
        self.dropout = dropout
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.nesterov = nesterov
        self.beta1 = beta1
        self.beta2 = beta2
        self.weight_decay = weight_decay
        self.decoupled_weight_decay = decoupled_weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.lr_schedule = lr_schedule
        self.warmup_epochs = warmup_epochs
        self.lr_step_epochs = lr_step_epochs
        self.lr_gamma = lr_gamma
        self.min_lr_factor = min_lr_factor
        self.label_smoothing = label_smoothing
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.monitor = monitor
        self.tol = tol
        self.restore_best_weights = restore_best_weights
        self.normalize_inputs = normalize_inputs
        self.augmentation = augmentation
        self.input_shape = input_shape
        self.random_state = random_state
        self.dtype = dtype

    def _example_shape(self, n_features: int) -> tuple[int, ...]:
        # Without an input shape a row of n features is a one-pixel-high, single-channel strip.
        return tuple(self.input_shape) if self.input_shape is not None else (1, n_features, 1)

    def _make_layers(self, n_classes: int, input_shape: tuple[int, ...]) -> list[Layer]:
        layers: list[Layer] = []
        height, width = input_shape[0], input_shape[1]
        for channels in self.conv_channels:
            layers.append(Conv2D(channels, self.kernel_size, padding="same", use_bias=not self.batch_norm))
            # 2x2 pooling, narrowed to 1 along a side already down to one pixel (a strip, a tiny map).
            pool = (min(2, height), min(2, width))
            layers.append(MaxPool2D(2 if pool == (2, 2) else pool))
            height, width = height // pool[0], width // pool[1]
            if self.batch_norm:
                layers.append(BatchNorm2D())
            layers.append(ReLU())
        layers.append(Flatten())
        for units in self.dense_units:
            layers.append(Dense(units))
            layers.append(ReLU())
            if self.dropout:
                layers.append(Dropout(self.dropout))
        layers.append(Dense(max(n_classes, 1), init="glorot"))
        return layers


def _activation(name: str) -> Layer:
    if name == "relu":
        return ReLU()
    if name == "tanh":
        return Tanh()
    if name == "gelu":
        return GELU()
    raise ValueError(f"unknown activation {name!r}; use 'relu', 'tanh' or 'gelu'")


def _encode(labels: NDArray[Any], classes: NDArray[Any]) -> NDArray[np.intp]:
    codes = np.searchsorted(classes, labels)
    codes = np.clip(codes, 0, classes.shape[0] - 1)
    if np.any(classes[codes] != labels):
        raise ValueError("validation labels contain a class absent from the training labels")
    return codes
