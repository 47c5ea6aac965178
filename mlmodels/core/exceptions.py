"""Errors raised by the NumPy core; every one derives from :class:`MLModelsError`."""

from __future__ import annotations

from collections.abc import Mapping


class MLModelsError(Exception):
    """Base class of every error the mlmodels core raises on purpose."""


class NotFittedError(MLModelsError, ValueError):
    """An estimator was used for prediction or saving before ``fit``."""


class InvalidInput(MLModelsError, ValueError):
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
