from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import DomainError
from knowledge.embeddings import embedder_prepare


class Command(BaseCommand):
    help = (
        "Load the embedding model and export its ONNX Runtime copy (which embeds chunks and questions) into "
        "KNOWLEDGE_MODEL_CACHE_DIR, otherwise done on first use in each process. The image runs it at build time."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", help="default: KNOWLEDGE_EMBEDDING_MODEL")
        parser.add_argument(
            "--require-onnx", action="store_true", help="fail unless texts are embedded on ONNX Runtime"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["model"] or settings.KNOWLEDGE_EMBEDDING_MODEL
        try:
            runtime = embedder_prepare(name=name)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        if options["require_onnx"] and runtime != "onnx":
            raise CommandError(f"{name}: texts are embedded with {runtime}, not ONNX Runtime (see the log).")
        where = f" (cache: {settings.KNOWLEDGE_MODEL_CACHE_DIR})" if runtime == "onnx" else ""
        self.stdout.write(f"{name}: texts are embedded with {runtime}{where}.")
