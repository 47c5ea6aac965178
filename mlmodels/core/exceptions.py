"""Errors raised by the NumPy core; every one derives from :class:`MLModelsError`."""

from __future__ import annotations

import sys
from collections.abc import Mapping


class MLModelsError(Exception):
    """Base class of every error the mlmodels core raises on purpose."""


class NotFittedError(MLModelsError, ValueError, AttributeError):
    """An estimator was used for prediction or saving before ``fit``.

    A ``ValueError`` and an ``AttributeError``, like scikit-learn's ``NotFittedError``. When scikit-learn
    is loaded in the process, :func:`not_fitted_error` raises a subclass of both classes, so
    ``except sklearn.exceptions.NotFittedError`` catches it too.
    """


def not_fitted_error(message: str) -> NotFittedError:
    """A :class:`NotFittedError`, also an instance of scikit-learn's when scikit-learn is already imported.

    scikit-learn is never imported here: it is looked up in ``sys.modules``, so a process that does not
    use it (the web and worker processes) never loads it.
    """
    sklearn_exceptions = sys.modules.get("sklearn.exceptions")
    sklearn_error = getattr(sklearn_exceptions, "NotFittedError", None)
    if isinstance(sklearn_error, type) and issubclass(sklearn_error, Exception):
        bridged = _BRIDGED.get(sklearn_error)
        if bridged is None:
            bridged = _BRIDGED.setdefault(
                sklearn_error,
                type("NotFittedError", (NotFittedError, sklearn_error), {"__module__": __name__}),
            )
        return bridged(message)
    return NotFittedError(message)


_BRIDGED: dict[type[Exception], type[NotFittedError]] = {}


class InvalidFields(MLModelsError, ValueError):
    """Input data failed validation; ``field`` names the first offending field.

    ``errors`` maps every offending field to its message so an API can report all of them at once.
    """

    def __init__(self, field: str, message: str, *, errors: Mapping[str, str] | None = None) -> None:
        self.field = field
        self.message = message
        self.errors: dict[str, str] = dict(errors) if errors else {field: message}
        super().__init__(f"{field}: {message}")


class ModelFormatError(MLModelsError, ValueError):
    """A saved model file is not one this library wrote, or is damaged."""


class ConvergenceWarning(UserWarning):
    """An iterative solver stopped at ``max_iter`` before meeting its tolerance."""


class DataConversionWarning(UserWarning):
    """Input was accepted in a shape that had to be converted (a column-vector ``y``), as scikit-learn warns."""
