import argparse
import sys
from collections.abc import Mapping
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from core.errors import DomainError
from mlmodels import presentation, selectors, services
from mlmodels.models import ModelVersion


class TrainingCommand(BaseCommand):
    """Trains a version in this process with a progress bar, then prints its metrics (shared by both commands)."""

    unit = "epoch"
    shown: tuple[str, ...] = ("loss", "accuracy", "val_loss", "val_accuracy")

    def train(self, **arguments: Any) -> ModelVersion:
        with tqdm(unit=self.unit, desc="training", disable=None, file=sys.stderr) as bar:

            def progress(step: int, total: int, row: Mapping[str, float]) -> None:
                bar.total = total
                bar.update(step - bar.n)
                bar.set_postfix(
                    {
                        key: f"{value:.4f}"
                        for key, value in row.items()
                        if key in self.shown and value is not None
                    }
                )

            try:
                version = services.model_version_train_now(**arguments, on_progress=progress)
            except DomainError as exc:
                raise CommandError(exc.message) from exc
        if version.status != ModelVersion.Status.READY:
            raise CommandError(f"{version} failed: {version.error}")
        self._report(version)
        return version

    def _report(self, version: ModelVersion) -> None:
        rows = presentation.metric_rows(version.metrics)
        width = max(len(row.label) for row in rows) if rows else 10
        self.stdout.write(f"\n{version}: trained in {version.train_seconds or 0:.1f} s")
        self.stdout.write(f"  {version.dataset.get('split', '')}")
        for row in rows:
            self.stdout.write(f"  {row.label:<{width}}  {row.display:>12}")
        if version.is_active:
            self.stdout.write(self.style.SUCCESS(f"{version} is the active {version.kind} model."))
        else:
            active = selectors.model_version_active(kind=version.kind)
            self.stdout.write(
                f"{version} is not active ({active} is); activate it in admin or train with --activate."
            )


def _c_value(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number or auto, got {text!r}") from None


class Command(TrainingCommand):
    help = (
        "Train a new version of the Titanic model in this process: C chosen by cross-validation (nested, for the "
        "reported accuracy), stratified K-fold cross-validation, then a fit on all 891 passengers. It is recorded as a version, and becomes active with --activate or when no "
        "version is active."
    )
    unit = "step"
    shown = ("accuracy", "roc_auc", "log_loss")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seed", type=int, default=0, help="shuffling of the folds (default 0)")
        parser.add_argument(
            "--C",
            type=_c_value,
            default="auto",
            help="inverse regularization strength, or auto (the default): chosen by cross-validation, "
            "with the nested cross-validated accuracy reported",
        )
        parser.add_argument("--penalty", choices=["l2", "l1", "elasticnet", "none"], default="l2")
        parser.add_argument("--l1-ratio", type=float, default=0.5, help="mix of L1 in the elastic net")
        parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
        parser.add_argument("--activate", action="store_true", help="make it the active version once trained")

    def handle(self, *args: Any, **options: Any) -> None:
        self.train(
            kind="titanic",
            options={
                "C": options["C"],
                "penalty": options["penalty"],
                "l1_ratio": options["l1_ratio"],
                "n_splits": options["folds"],
            },
            seed=options["seed"],
            activate=options["activate"],
        )
