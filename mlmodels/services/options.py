"""What a training may be asked for: the arguments of the core's training entry points, checked."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from core.errors import InvalidInput
from mlmodels.models import ARCHITECTURES_BY_KIND, Architecture, Kind


class TrainingOptionsInvalid(InvalidInput):
    """The training options are not valid."""


# C "auto": chosen by cross-validation from the core's TITANIC_C_GRID (nested for the reported accuracy).
TITANIC_OPTIONS: dict[str, Any] = {"C": "auto", "penalty": "l2", "l1_ratio": 0.5, "n_splits": 5}

MNIST_OPTIONS: dict[str, Any] = {
    "epochs": None,
    "augment": False,
    "train_size": None,
    "validation_size": 5000,
    "overrides": {},
}


# The digits model the first start trains before the full one, so that the canvas answers within a minute: an MLP
# with one layer of 256 units, 3 epochs on the 55,000 training digits. Measured with `manage.py train_mnist
# --quick-start`: 97.34% of the test digits (validation 97.86%), trained in 14.8 s (the command: 19 s) on two cores
# busy with other work (load average 4).
QUICK_START_ARCHITECTURE = str(Architecture.MLP)
QUICK_START_OPTIONS: dict[str, Any] = {"epochs": 3, "overrides": {"hidden_layer_sizes": [256]}}


def default_architecture(kind: str) -> str:
    if kind == Kind.TITANIC:
        return str(Architecture.LOGREG)
    return str(settings.MLMODELS_MNIST_DEFAULT_ARCH)


def default_options(kind: str) -> dict[str, Any]:
    """What `ensure_models` trains: the core's defaults, with the MNIST epochs from settings."""
    if kind == Kind.MNIST:
        return {"epochs": int(settings.MLMODELS_MNIST_DEFAULT_EPOCHS) or None}
    return {}


def clean_request(
    kind: str, architecture: str, options: Mapping[str, Any], seed: int
) -> tuple[str, dict[str, Any]]:
    if kind not in Kind.values:
        raise TrainingOptionsInvalid(f"Unknown kind {kind!r}; use {' or '.join(Kind.values)}.", field="kind")
    if architecture not in ARCHITECTURES_BY_KIND[kind]:
        allowed = " or ".join(ARCHITECTURES_BY_KIND[kind])
        raise TrainingOptionsInvalid(
            f"A {kind} model is trained as {allowed}, not {architecture!r}.", field="architecture"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise TrainingOptionsInvalid("The seed must be a whole number from 0 to 2**32 - 1.", field="seed")
    defaults = TITANIC_OPTIONS if kind == Kind.TITANIC else MNIST_OPTIONS
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise TrainingOptionsInvalid(
            f"Unknown training options for {kind}: {', '.join(unknown)} (known: {', '.join(defaults)}).",
            field=unknown[0],
        )
    clean = {**defaults, **{key: value for key, value in options.items() if value is not None}}
    checks: list[tuple[str, bool, str]]
    if kind == Kind.TITANIC:
        clean["penalty"] = str(clean["penalty"]).lower()
        checks = [
            (
                "C",
                clean["C"] == "auto" or (_number(clean["C"]) and float(clean["C"]) > 0),
                'C must be a positive number, or "auto" to choose it by cross-validation.',
            ),
            (
                "penalty",
                clean["penalty"] in ("l2", "l1", "elasticnet", "none"),
                "The penalty is l2, l1, elasticnet or none.",
            ),
            (
                "l1_ratio",
                _number(clean["l1_ratio"]) and 0 <= float(clean["l1_ratio"]) <= 1,
                "l1_ratio is in [0, 1].",
            ),
            ("n_splits", _whole(clean["n_splits"], 2, 20), "n_splits is a whole number from 2 to 20."),
        ]
    else:
        checks = [
            (
                "epochs",
                clean["epochs"] is None or _whole(clean["epochs"], 1, 500),
                "epochs is from 1 to 500.",
            ),
            ("augment", isinstance(clean["augment"], bool), "augment is true or false."),
            (
                "train_size",
                clean["train_size"] is None or _whole(clean["train_size"], 10, 60000),
                "train_size is a whole number from 10 to 60000.",
            ),
            (
                "validation_size",
                _whole(clean["validation_size"], 100, 30000),
                "validation_size is a whole number from 100 to 30000.",
            ),
            ("overrides", isinstance(clean["overrides"], Mapping), "overrides is an object of parameters."),
        ]
    for name, valid, message in checks:
        if not valid:
            raise TrainingOptionsInvalid(message, field=name)
    return architecture, clean


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
