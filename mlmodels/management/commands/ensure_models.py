from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from mlmodels import services


class Command(BaseCommand):
    help = (
        "Make sure every model has an active version, without waiting: a model with none gets its latest ready "
        "version activated, or its training queued for the workers (MNIST with MLMODELS_MNIST_DEFAULT_ARCH) unless "
        "one is already waiting or training. `make run` calls it; MLMODELS_ENSURE_ON_RUN=0 turns that off."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="run even when MLMODELS_ENSURE_ON_RUN is off"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.MLMODELS_ENSURE_ON_RUN and not options["force"]:
            self.stdout.write("Models: not checked (MLMODELS_ENSURE_ON_RUN is off).")
            return
        for ensured in services.models_ensure():
            self.stdout.write(f"Models: {ensured.message}")
