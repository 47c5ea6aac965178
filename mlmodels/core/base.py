"""Estimator plumbing in the scikit-learn shape: parameters from ``__init__``, fitted state ends in ``_``."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mlmodels.core.exceptions import not_fitted_error

_REGISTRY: dict[str, type[Component]] = {}

C = TypeVar("C", bound="Component")


class Component:
    """Anything that can be saved: its hyperparameters are the ``__init__`` arguments.

    Subclasses register themselves by class name, which is what lets :func:`load_model` rebuild an
    object from a file without pickle (only registered classes can be instantiated).
    """

    _registry_name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__name__
        if name.startswith("_"):
            return
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise TypeError(f"two persistable classes are both named {name!r}")
        _REGISTRY[name] = cls
        cls._registry_name = name

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [
            p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The ``__init__`` arguments; with ``deep``, also those of nested components as ``name__param``."""
        params: dict[str, Any] = {}
        for name in self._param_names():
            value = getattr(self, name)
            params[name] = value
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                params.update((f"{name}__{key}", item) for key, item in value.get_params(deep=True).items())
        return params

    def set_params(self: C, **params: Any) -> C:
        """Set ``__init__`` arguments, and those of nested components as ``name__param``."""
        valid = set(self._param_names())
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, separator, inner = key.partition("__")
            if name not in valid:
                raise ValueError(
                    f"{type(self).__name__} has no parameter {name!r}; valid parameters are {sorted(valid)}"
                )
            if separator:
                nested.setdefault(name, {})[inner] = value
            else:
                setattr(self, name, value)
        for name, inner_params in nested.items():
            component = getattr(self, name)
            if not hasattr(component, "set_params"):
                raise ValueError(f"parameter {name!r} of {type(self).__name__} has no parameters of its own")
            component.set_params(**inner_params)
        return self

    def _get_state(self) -> dict[str, Any]:
        """Fitted state to persist: public attributes ending in ``_``."""
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def _set_state(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)

    def __repr__(self) -> str:
        defaults = {
            p.name: p.default
            for p in inspect.signature(type(self).__init__).parameters.values()
            if p.default is not p.empty
        }
        shown = []
        for key, value in self.get_params(deep=False).items():
            default = defaults.get(key, inspect.Parameter.empty)
            if default is inspect.Parameter.empty or not _same(value, default):
                shown.append(f"{key}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except (ValueError, TypeError):
        return False


def registered_class(name: str) -> type[Component]:
    try:
        return _REGISTRY[name]
    except KeyError:
        from mlmodels.core.exceptions import ModelFormatError

        raise ModelFormatError(f"unknown component class {name!r} in model file") from None


class BaseEstimator(Component):
    """Estimators: ``fit`` returns ``self`` and sets attributes ending in ``_``.

    scikit-learn's tools (``clone``, ``Pipeline``, ``GridSearchCV``, ``cross_val_score``, the estimator
    checks) use them through ``get_params``/``set_params`` and ``__sklearn_tags__``. scikit-learn is a test
    dependency only: ``__sklearn_tags__`` imports it, but only scikit-learn ever calls that method, so
    it is already loaded when it runs; nothing else in the core touches it.
    """

    def _check_is_fitted(self, attribute: str) -> None:
        if not hasattr(self, attribute):
            raise not_fitted_error(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with appropriate "
                "arguments before using this estimator."
            )

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(
            estimator_type=None,
            target_tags=TargetTags(required=False),
            transformer_tags=None,
            regressor_tags=None,
            classifier_tags=None,
            input_tags=InputTags(),
        )


class TransformerMixin:
    def fit_transform(self, X: Any, y: ArrayLike | None = None) -> Any:
        return self.fit(X, y).transform(X)  # type: ignore[attr-defined]

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import TransformerTags

        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.transformer_tags = TransformerTags()
        return tags


class ClassifierMixin:
    def score(self, X: Any, y: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
        """Mean accuracy of ``predict(X)`` against ``y`` (weighted by ``sample_weight`` if given)."""
        predictions: NDArray[Any] = self.predict(X)  # type: ignore[attr-defined]
        correct = predictions == np.asarray(y).reshape(predictions.shape)
        weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        return float(np.average(correct, weights=weights))

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import ClassifierTags

        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.estimator_type = "classifier"
        tags.classifier_tags = ClassifierTags()
        tags.target_tags.required = True
        return tags
