"""A version as people read it: metrics formatted and in order, nested parameters flattened, and versions compared."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import InvalidInput
from mlmodels.models import KEY_METRICS, Kind, ModelVersion
from mlmodels.selectors import ConfusionCell, available_plots, confusion_cells, model_version_get

_METRICS: dict[str, tuple[str, str]] = {
    "test_accuracy": ("Test accuracy", "percent"),
    "test_error_count": ("Test digits wrong", "int"),
    "test_log_loss": ("Test log loss", "float"),
    "test_macro_precision": ("Test precision (macro)", "percent"),
    "test_macro_recall": ("Test recall (macro)", "percent"),
    "test_macro_f1": ("Test F1 (macro)", "float"),
    "val_accuracy": ("Validation accuracy (best epoch)", "percent"),
    "val_loss": ("Validation loss (best epoch)", "float"),
    "epochs_run": ("Epochs run", "int"),
    "best_epoch": ("Best epoch", "int"),
    "seconds_per_epoch": ("Seconds per epoch", "seconds"),
    "parameters": ("Parameters", "int"),
    "cv_accuracy_mean": ("Cross-validated accuracy", "percent"),
    "cv_accuracy_std": ("… standard deviation", "percent"),
    "cv_roc_auc_mean": ("Cross-validated ROC AUC", "float"),
    "cv_roc_auc_std": ("… standard deviation", "float"),
    "cv_log_loss_mean": ("Cross-validated log loss", "float"),
    "nested_cv_accuracy_mean": ("Nested cross-validated accuracy (C chosen inside each fold)", "percent"),
    "nested_cv_accuracy_std": ("… standard deviation", "percent"),
    "chosen_C": ("C (chosen by cross-validation)", "float"),
    "oof_brier": ("Brier score (out of fold)", "float"),
    "oof_precision": ("Precision (out of fold)", "percent"),
    "oof_recall": ("Recall (out of fold)", "percent"),
    "oof_f1": ("F1 (out of fold)", "float"),
    "train_accuracy": ("Training accuracy (final fit)", "percent"),
    "train_roc_auc": ("Training ROC AUC (final fit)", "float"),
    "solver_iterations": ("Solver iterations", "int"),
}


def format_metric(name: str, value: Any) -> str:
    """A metric value as people read it: accuracies in percent, counts whole."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
        return "—"
    style = _METRICS.get(name, (name, "float"))[1]
    if style == "percent":
        return f"{100 * value:.2f} %"
    if style == "int":
        return f"{round(value):,}"
    if style == "seconds":
        return f"{value:.1f} s"
    return f"{value:.4f}"


def metric_label(name: str) -> str:
    return _METRICS.get(name, (name.replace("_", " ").capitalize(), ""))[0]


@dataclass(frozen=True)
class MetricRow:
    name: str
    label: str
    display: str
    value: float | None


def metric_rows(metrics: Mapping[str, Any]) -> list[MetricRow]:
    """The metrics in a fixed, meaningful order (known ones first), ready to show."""
    known = [name for name in _METRICS if name in metrics]
    others = sorted(name for name in metrics if name not in _METRICS)
    return [
        MetricRow(
            name=name,
            label=metric_label(name),
            display=format_metric(name, metrics[name]),
            value=float(metrics[name]) if isinstance(metrics[name], (int, float)) else None,
        )
        for name in known + others
    ]


def flatten_parameters(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested hyperparameters (components as {"class", "params"}, pipeline steps as [name, component]) as
    (dotted name, value) rows, keys in alphabetical order (PostgreSQL's jsonb keeps no order of its own)."""
    if isinstance(value, Mapping) and set(value) == {"class", "params"}:
        rows = [(prefix or "model", str(value["class"]))]
        return rows + flatten_parameters(value["params"], prefix)
    if isinstance(value, Mapping):
        return [
            row
            for key, item in sorted(value.items())
            for row in flatten_parameters(item, f"{prefix}.{key}" if prefix else key)
        ]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) for item in value)
    ):
        return [
            row
            for name, item in value
            for row in flatten_parameters(item, f"{prefix}.{name}" if prefix and prefix != "steps" else name)
        ]
    if isinstance(value, float):
        return [(prefix, f"{value:.6g}")]
    text = value if isinstance(value, str) else json.dumps(value)
    return [(prefix, text)]


# The columns of the training history, in the order people compare them.
_HISTORY_COLUMNS = (
    "epoch",
    "fold",
    "loss",
    "val_loss",
    "accuracy",
    "val_accuracy",
    "roc_auc",
    "log_loss",
    "brier",
    "nested_C",
    "nested_accuracy",
    "precision",
    "recall",
    "f1",
    "learning_rate",
    "seconds",
)


@dataclass(frozen=True)
class VersionDetail:
    version: ModelVersion
    metrics: list[MetricRow]
    hyperparameters: list[tuple[str, str]]
    dataset: list[tuple[str, str]]
    training_options: list[tuple[str, str]]
    plots: list[str]
    history_columns: list[str]
    confusion_rows: list[tuple[int, list[ConfusionCell]]]
    coefficients: list[tuple[str, float]] = field(default_factory=list)
    calibration: list[CalibrationBin] = field(default_factory=list)


@dataclass(frozen=True)
class CalibrationBin:
    """One bin of a reliability diagram: passengers whose predicted probability fell in it, and how many
    of them survived."""

    count: int
    predicted: str
    observed: str


def calibration_bins(version: ModelVersion) -> list[CalibrationBin]:
    curve = (version.extra or {}).get("calibration") or {}
    return [
        CalibrationBin(
            count=int(count), predicted=f"{100 * predicted:.1f} %", observed=f"{100 * observed:.1f} %"
        )
        for predicted, observed, count in zip(
            curve.get("predicted", []), curve.get("observed", []), curve.get("count", []), strict=False
        )
    ]


def version_detail(*, version_id: int) -> VersionDetail:
    """Everything the version page shows; raises ModelVersionNotFound."""
    version = model_version_get(version_id=version_id)
    dataset = {key: value for key, value in (version.dataset or {}).items() if key not in ("sha256", "files")}
    seen = {key for row in version.history for key in row}
    columns = [key for key in _HISTORY_COLUMNS if key in seen] + sorted(seen - set(_HISTORY_COLUMNS))
    coefficients = sorted(
        ((str(name), float(value)) for name, value in (version.extra or {}).get("coefficients", {}).items()),
        key=lambda item: -abs(item[1]),
    )
    return VersionDetail(
        version=version,
        metrics=metric_rows(version.metrics or {}),
        hyperparameters=flatten_parameters(version.hyperparameters or {}),
        dataset=flatten_parameters(dataset),
        training_options=flatten_parameters(version.training_options or {}),
        plots=available_plots(version),
        history_columns=columns,
        confusion_rows=confusion_cells(version),
        coefficients=coefficients,
        calibration=calibration_bins(version),
    )


@dataclass(frozen=True)
class Comparison:
    kind: str
    versions: list[ModelVersion]
    choices: list[ModelVersion]
    metrics: list[tuple[str, list[str], int | None]]
    per_class: list[tuple[int, list[str], int | None]]
    key_metric: str


def versions_compare(*, kind: str, ids: Sequence[int] = ()) -> Comparison:
    """Trained versions of `kind` side by side: each metric and each class's recall, with the best one marked.
    Without `ids`: the active version and the latest others, four at most. Raises InvalidInput for an unknown
    kind."""
    if kind not in Kind.values:
        raise InvalidInput(f"Unknown kind {kind!r}; use one of {', '.join(Kind.values)}.")
    choices = list(
        ModelVersion.objects.of_kind(kind).ready().select_related("created_by").order_by("-version")
    )
    if ids:
        wanted = set(ids)
        versions = [version for version in choices if version.pk in wanted]
    else:
        active = [version for version in choices if version.is_active]
        versions = (active + [version for version in choices if not version.is_active])[:4]
        versions.sort(key=lambda version: -version.version)
    names = [name for name in _METRICS if any(name in (v.metrics or {}) for v in versions)]
    metrics = []
    for name in names:
        values = [(v.metrics or {}).get(name) for v in versions]
        metrics.append(
            (metric_label(name), [format_metric(name, value) for value in values], _best(name, values))
        )
    per_class = []
    labels = [int(label) for label in versions[0].class_labels] if versions else []
    for position, label in enumerate(labels):
        recalls: list[float | None] = []
        for version in versions:
            matrix = version.confusion_matrix
            row = matrix[position] if position < len(matrix) else []
            recalls.append(row[position] / sum(row) if row and sum(row) else None)
        shown = [f"{100 * recall:.2f} %" if recall is not None else "—" for recall in recalls]
        per_class.append((label, shown, _best("recall", recalls)))
    return Comparison(
        kind=kind,
        versions=versions,
        choices=choices,
        metrics=metrics,
        per_class=per_class,
        key_metric=KEY_METRICS[kind][0],
    )


_LOWER_IS_BETTER = ("loss", "error", "std", "seconds", "parameters", "epoch", "iterations", "brier")


def _best(name: str, values: Iterable[Any]) -> int | None:
    """Position of the one best value (None when fewer than two can be compared, when several share the best,
    or when the metric has no 'better')."""
    numbers = [(i, float(v)) for i, v in enumerate(values) if isinstance(v, (int, float)) and np.isfinite(v)]
    if len(numbers) < 2 or name in ("epochs_run", "best_epoch", "parameters", "chosen_C"):
        return None
    lower = any(word in name for word in _LOWER_IS_BETTER)
    position, best = (min if lower else max)(numbers, key=lambda item: item[1])
    return None if sum(1 for _, value in numbers if value == best) > 1 else position
