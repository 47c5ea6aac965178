"""Estimator plumbing in the scikit-learn shape: parameters from ``__init__``, fitted state ends in ``_``."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mlmodels.core.exceptions import NotFittedError

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

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self: C, **params: Any) -> C:
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"{type(self).__name__} has no parameter {key!r}")
            setattr(self, key, value)
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
        for key, value in self.get_params().items():
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
    """Estimators: ``fit`` returns ``self`` and sets attributes ending in ``_``."""

    def _check_is_fitted(self, attribute: str) -> None:
        if not hasattr(self, attribute):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")


class TransformerMixin:
    def fit_transform(self, X: Any, y: ArrayLike | None = None) -> Any:
        return self.fit(X, y).transform(X)  # type: ignore[attr-defined]


class ClassifierMixin:
    def score(self, X: Any, y: ArrayLike) -> float:
        """Mean accuracy of ``predict(X)`` against ``y``."""
        predictions: NDArray[Any] = self.predict(X)  # type: ignore[attr-defined]
        return float(np.mean(predictions == np.asarray(y)))
