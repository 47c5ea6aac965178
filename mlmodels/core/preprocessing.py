"""Fit/transform preprocessing: every statistic is learned in ``fit`` from training data only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mlmodels.core.base import BaseEstimator, TransformerMixin


def _as_2d_float(X: ArrayLike, name: str = "X") -> NDArray[np.float64]:
    array = np.asarray(X, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be two-dimensional, got shape {array.shape}")
    return array


def _is_missing(values: NDArray[Any]) -> NDArray[np.bool_]:
    if values.dtype.kind == "f":
        missing: NDArray[np.bool_] = np.isnan(values)
        return missing
    if values.dtype.kind == "O":
        return np.array(
            [v is None or (isinstance(v, float) and np.isnan(v)) for v in values.ravel()]
        ).reshape(values.shape)
    return np.zeros(values.shape, dtype=bool)


class StandardScaler(TransformerMixin, BaseEstimator):
    """Centre to zero mean and scale to unit variance; constant columns keep scale 1."""

    def __init__(self, *, with_mean: bool = True, with_std: bool = True) -> None:
        self.with_mean = with_mean
        self.with_std = with_std

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> StandardScaler:
        data = _as_2d_float(X)
        self.n_features_in_ = data.shape[1]
        self.mean_ = data.mean(axis=0) if self.with_mean else np.zeros(data.shape[1])
        scale = data.std(axis=0) if self.with_std else np.ones(data.shape[1])
        # A constant column would divide by zero; scikit-learn leaves such columns unscaled too.
        self.scale_ = np.where(scale < 10 * np.finfo(np.float64).eps, 1.0, scale)
        return self

    def transform(self, X: ArrayLike) -> NDArray[np.float64]:
        self._check_is_fitted("mean_")
        data = _as_2d_float(X)
        if data.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {data.shape[1]} features, the scaler was fitted on {self.n_features_in_}"
            )
        return (data - self.mean_) / self.scale_

    def inverse_transform(self, X: ArrayLike) -> NDArray[np.float64]:
        self._check_is_fitted("mean_")
        return _as_2d_float(X) * self.scale_ + self.mean_


class SimpleImputer(TransformerMixin, BaseEstimator):
    """Replace missing entries (NaN or None) column by column with a statistic of the training data."""

    def __init__(
        self,
        *,
        strategy: Literal["mean", "median", "most_frequent", "constant"] = "mean",
        fill_value: Any = None,
    ) -> None:
        self.strategy = strategy
        self.fill_value = fill_value

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> SimpleImputer:
        data = np.asarray(X)
        if data.ndim != 2:
            raise ValueError(f"X must be two-dimensional, got shape {data.shape}")
        if self.strategy not in ("mean", "median", "most_frequent", "constant"):
            raise ValueError(f"unknown strategy {self.strategy!r}")
        missing = _is_missing(data)
        statistics: list[Any] = []
        for j in range(data.shape[1]):
            column = data[~missing[:, j], j]
            if self.strategy == "constant":
                statistics.append(self.fill_value)
            elif column.size == 0:
                raise ValueError(f"column {j} has no observed values to compute a {self.strategy}")
            elif self.strategy == "mean":
                statistics.append(float(np.mean(column.astype(np.float64))))
            elif self.strategy == "median":
                statistics.append(float(np.median(column.astype(np.float64))))
            else:
                values, counts = np.unique(column, return_counts=True)
                statistics.append(_plain(values[np.argmax(counts)]))  # ties go to the smallest value
        self.n_features_in_ = data.shape[1]
        self.statistics_ = np.array(statistics, dtype=data.dtype if data.dtype.kind != "O" else object)
        return self

    def transform(self, X: ArrayLike) -> NDArray[Any]:
        self._check_is_fitted("statistics_")
        data = np.array(X, copy=True)
        if data.ndim != 2 or data.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have shape (n, {self.n_features_in_}), got {data.shape}")
        if data.dtype.kind in "iub" and self.statistics_.dtype.kind == "f":
            data = data.astype(np.float64)
        missing = _is_missing(data)
        for j in range(data.shape[1]):
            data[missing[:, j], j] = self.statistics_[j]
        return data

    def _get_state(self) -> dict[str, Any]:
        state = super()._get_state()
        # Object arrays cannot be stored without pickle; keep the statistics as a plain list.
        state["statistics_"] = [v.item() if isinstance(v, np.generic) else v for v in self.statistics_]
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        statistics = state.pop("statistics_")
        super()._set_state(state)
        kinds = {type(v) for v in statistics}
        self.statistics_ = np.array(statistics, dtype=np.float64 if kinds <= {float, int} else object)


class OneHotEncoder(TransformerMixin, BaseEstimator):
    """One indicator column per category seen in training, columns in sorted-category order.

    ``handle_unknown="ignore"`` encodes a category never seen in training as all zeros, which is what a
    served model needs; ``"error"`` raises ``ValueError`` instead.
    """

    def __init__(
        self,
        *,
        handle_unknown: Literal["ignore", "error"] = "ignore",
        categories: Sequence[Sequence[Any]] | None = None,
    ) -> None:
        self.handle_unknown = handle_unknown
        self.categories = categories

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> OneHotEncoder:
        data = self._as_2d(X)
        if self.categories is not None:
            if len(self.categories) != data.shape[1]:
                raise ValueError("categories must list one sequence per column")
            self.categories_ = [list(c) for c in self.categories]
        else:
            self.categories_ = [
                sorted({_plain(v) for v in data[:, j]}, key=_sort_key) for j in range(data.shape[1])
            ]
        self.n_features_in_ = data.shape[1]
        return self

    @staticmethod
    def _as_2d(X: ArrayLike) -> NDArray[Any]:
        data = np.asarray(X, dtype=object)
        if data.ndim == 1:
            data = data[:, None]
        if data.ndim != 2:
            raise ValueError(f"X must be two-dimensional, got shape {data.shape}")
        return data

    def transform(self, X: ArrayLike) -> NDArray[np.float64]:
        self._check_is_fitted("categories_")
        data = self._as_2d(X)
        if data.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {data.shape[1]} columns, the encoder was fitted on {self.n_features_in_}"
            )
        blocks = []
        for j, categories in enumerate(self.categories_):
            index = {c: i for i, c in enumerate(categories)}
            block = np.zeros((data.shape[0], len(categories)), dtype=np.float64)
            for row, value in enumerate(data[:, j]):
                position = index.get(_plain(value))
                if position is None:
                    if self.handle_unknown == "error":
                        raise ValueError(f"unknown category {value!r} in column {j}")
                    continue
                block[row, position] = 1.0
            blocks.append(block)
        return np.hstack(blocks) if blocks else np.zeros((data.shape[0], 0))

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> list[str]:
        self._check_is_fitted("categories_")
        names = input_features or [f"x{j}" for j in range(self.n_features_in_)]
        return [
            f"{name}_{category}"
            for name, cats in zip(names, self.categories_, strict=True)
            for category in cats
        ]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _sort_key(value: Any) -> tuple[int, Any]:
    # Mixed types (e.g. None next to strings) still sort deterministically.
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))
