"""A chain of transformers ending in an estimator, fitted step by step on the same training data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mlmodels.core.base import BaseEstimator, ClassifierMixin


class Pipeline(ClassifierMixin, BaseEstimator):
    """``steps`` is a list of ``(name, component)``; all but the last need ``fit`` and ``transform``.

    Fitting the pipeline fits each transformer on the output of the previous one (``fit_transform``), so
    preprocessing is learned from exactly the rows the final estimator is trained on (e.g. one
    cross-validation fold).
    """

    def __init__(self, steps: Sequence[tuple[str, Any]]) -> None:
        self.steps = steps

    @property
    def named_steps(self) -> dict[str, Any]:
        return dict(self.steps)

    def _validate(self) -> None:
        names = [name for name, _ in self.steps]
        if not names:
            raise ValueError("a pipeline needs at least one step")
        if len(set(names)) != len(names):
            raise ValueError(f"step names must be unique: {names}")

    def fit(self, X: Any, y: ArrayLike | None = None, **fit_params: Any) -> Pipeline:
        self._validate()
        data = X
        for _, transformer in self.steps[:-1]:
            # fit_transform, as scikit-learn's Pipeline: a transformer may describe the rows it was fitted
            # on differently from new rows (TitanicFeatures' travel groups do).
            data = (
                transformer.fit_transform(data, y)
                if hasattr(transformer, "fit_transform")
                else transformer.fit(data, y).transform(data)
            )
        self.steps[-1][1].fit(data, y, **fit_params)
        self.fitted_ = True
        return self

    def transform_features(self, X: Any) -> Any:
        """Output of every step but the last."""
        self._check_is_fitted("fitted_")
        data = X
        for _, transformer in self.steps[:-1]:
            data = transformer.transform(data)
        return data

    def predict(self, X: Any) -> NDArray[Any]:
        return self.steps[-1][1].predict(self.transform_features(X))  # type: ignore[no-any-return]

    def predict_proba(self, X: Any) -> NDArray[np.float64]:
        return self.steps[-1][1].predict_proba(self.transform_features(X))  # type: ignore[no-any-return]

    def decision_function(self, X: Any) -> NDArray[np.float64]:
        return self.steps[-1][1].decision_function(self.transform_features(X))  # type: ignore[no-any-return]

    @property
    def classes_(self) -> NDArray[Any]:
        return self.steps[-1][1].classes_  # type: ignore[no-any-return]
