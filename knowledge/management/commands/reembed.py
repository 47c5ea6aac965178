from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import DomainError
from knowledge import services
from knowledge.models import Collection


class Command(BaseCommand):
    help = (
        "Re-embed a collection with another embedding model. Search keeps using the current model until every "
        "chunk has its new vector, then switches at once. Runs on the workers unless --now is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--collection", required=True, help="slug of the collection")
        parser.add_argument(
            "--model", required=True, help="all-MiniLM-L6-v2, hashing-384 or a local model folder"
        )
        parser.add_argument("--now", action="store_true", help="run in this process and wait for the switch")

    def handle(self, *args: Any, **options: Any) -> None:
        collection = Collection.objects.filter(slug=options["collection"]).first()
        if collection is None:
            raise CommandError(f"No collection {options['collection']!r}.")
        try:
            if options["now"]:
                services.collection_reembed(collection=collection, model_name=options["model"], enqueue=False)
                collection = services.collection_reembed_run(collection_id=collection.pk)
                self.stdout.write(f"{collection.slug} now searches with {collection.embedding_model}.")
            else:
                services.collection_reembed(collection=collection, model_name=options["model"])
                self.stdout.write(
                    f"{collection.slug}: re-embedding with {options['model']} on the workers; search uses "
                    f"{collection.embedding_model} until it finishes. Progress is shown in admin."
                )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
