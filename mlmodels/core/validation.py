"""Input validation with scikit-learn's rules and messages, without importing scikit-learn.

The messages match the ones scikit-learn's own ``check_array`` and ``check_classification_targets``
raise, so code (and scikit-learn's estimator checks) that look for them recognize ours.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from mlmodels.core.exceptions import DataConversionWarning


def check_array(
    X: ArrayLike, *, dtype: DTypeLike = np.float64, estimator: object | None = None, allow_nd: bool = False
) -> NDArray[Any]:
    """``X`` as a finite, real array of at least one sample and one feature.

    Refuses complex values (the imaginary part would be dropped silently), strings that are not numbers,
    one-dimensional input (ambiguous: one sample or one feature?), empty input and NaN or infinity.
    ``allow_nd`` accepts more than two dimensions (images); a 0-d or 1-d array is never accepted.
    """
    name = type(estimator).__name__ if estimator is not None else "the estimator"
    if type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(
            f"Sparse data was passed to {name}, but dense data is required; use X.toarray() to convert "
            "it to a dense array."
        )
    raw = X if isinstance(X, np.ndarray) else np.asarray(X)
    if np.iscomplexobj(raw) or (raw.dtype == object and any(isinstance(v, complex) for v in raw.flat)):
        raise ValueError("Complex data not supported")
    data = np.asarray(raw, dtype=dtype)  # a non-numeric object raises TypeError, as in NumPy
    if data.ndim < 2:
        raise ValueError(
            f"Expected 2D array, got {'scalar' if data.ndim == 0 else '1D'} array instead: {_short(data)}. "
            "Reshape your data either using array.reshape(-1, 1) if your data has a single feature or "
            "array.reshape(1, -1) if it contains a single sample."
        )
    if data.ndim > 2 and not allow_nd:
        raise ValueError(f"Found array with dim {data.ndim}, while dim <= 2 is required by {name}.")
    if data.shape[0] == 0:
        raise ValueError(
            f"Found array with 0 sample(s) (shape={data.shape}) while a minimum of 1 is required by {name}."
        )
    n_features = int(np.prod(data.shape[1:]))
    if n_features == 0:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={data.shape}) while a minimum of 1 is required by {name}."
        )
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        what = "NaN" if np.isnan(data).any() else "infinity"
        raise ValueError(
            f"Input X contains {what}; {name} does not accept missing values or infinities "
            "(impute or drop them first)."
        )
    return data


def check_n_features(estimator: Any, data: NDArray[Any]) -> None:
    """The number of features ``data`` has must be the one ``fit`` saw (``n_features_in_``)."""
    n_features = int(np.prod(data.shape[1:]))
    if n_features != estimator.n_features_in_:
        raise ValueError(
            f"X has {n_features} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )


def check_classification_targets(y: ArrayLike | None, n_samples: int) -> NDArray[Any]:
    """``y`` as a 1-D array of class labels, one per sample.

    A column vector ``(n, 1)`` is raveled with a :class:`DataConversionWarning`, as in scikit-learn.
    Floats that are not whole numbers are a regression target ("continuous") and refused, and so are
    NaN labels and several target columns.
    """
    if y is None:
        raise ValueError("This classifier requires y to be passed, but the target y is None.")
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        warnings.warn(
            "A column-vector y was passed when a 1d array was expected. Please change the shape of y to "
            "(n_samples,), for example using ravel().",
            DataConversionWarning,
            stacklevel=3,
        )
        labels = labels.ravel()
    if labels.ndim != 1:
        raise ValueError(
            f"y must be one label per sample (1-D); got shape {labels.shape}: multioutput targets are "
            "not supported"
        )
    if labels.shape[0] != n_samples:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: [{n_samples}, {labels.shape[0]}]"
        )
    if labels.dtype.kind == "c":
        raise ValueError("Complex data not supported")
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            raise ValueError("Input y contains NaN or infinity.")
        if np.any(labels != np.round(labels)):
            raise ValueError(
                "Unknown label type: continuous. Maybe you are trying to fit a classifier, which expects "
                "discrete classes on a regression target with continuous values."
            )
    elif labels.dtype == object and not all(isinstance(v, (str, int, np.integer)) for v in labels):
        kinds = sorted({type(v).__name__ for v in labels})
        raise ValueError(f"Unknown label type: labels of type {', '.join(kinds)}; use strings or integers")
    return labels


def _short(data: NDArray[Any]) -> str:
    text = np.array2string(data.ravel()[:10], threshold=10)
    return text if data.size <= 10 else text[:-1] + " ...]"
