import argparse
import json
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser

from mlmodels.management.commands.train_titanic import TrainingCommand
from mlmodels.services.options import QUICK_START_ARCHITECTURE, QUICK_START_OPTIONS


class Command(TrainingCommand):
    help = (
        "Train a new version of the MNIST model in this process on the 55,000 training digits (the last 5,000 "
        "validate each epoch) and evaluate it on the 10,000 test digits. It is recorded as a version, and becomes "
        "active with --activate, when no version is active, or in place of a first start's quick-start model if "
        "it validates at least as well."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--arch",
            choices=["mlp", "cnn"],
            default=settings.MLMODELS_MNIST_DEFAULT_ARCH,
            help="multi-layer perceptron or convolutional network (default: MLMODELS_MNIST_DEFAULT_ARCH)",
        )
        parser.add_argument(
            "--epochs",
            type=int,
            help="default: the architecture's (MLP 20, CNN 12; with --augment 60 and 15)",
        )
        parser.add_argument("--augment", action="store_true", help="random shifts, rotations and scaling")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--activate", action="store_true", help="make it the active version once trained")
        parser.add_argument(
            "--quick-start",
            action="store_true",
            help="the small model a first start trains (an MLP of 256 units, 3 epochs), instead of --arch/--epochs",
        )
        # For tests and quick checks: train on the first N digits, validate on fewer, override parameters (JSON).
        parser.add_argument("--train-size", type=int, help=argparse.SUPPRESS)
        parser.add_argument("--validation-size", type=int, default=5000, help=argparse.SUPPRESS)
        parser.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            overrides = json.loads(options["overrides"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--overrides is not JSON: {exc}") from exc
        asked = {
            "epochs": options["epochs"],
            "augment": options["augment"],
            "train_size": options["train_size"],
            "validation_size": options["validation_size"],
            "overrides": overrides,
        }
        architecture = options["arch"]
        if options["quick_start"]:
            architecture = QUICK_START_ARCHITECTURE
            asked = {
                **asked,
                **QUICK_START_OPTIONS,
                "overrides": {**QUICK_START_OPTIONS["overrides"], **overrides},
            }
        self.train(
            kind="mnist",
            architecture=architecture,
            options=asked,
            seed=options["seed"],
            activate=options["activate"],
            quick_start=options["quick_start"],
        )
