from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge import services
from knowledge.models import Collection

DEMO_FOLDER = Path(__file__).resolve().parents[2] / "demo" / "postgresql"
DEMO_SLUG = "postgresql-demo"
# Offered on the home page; each is answered by a page of the demo.
DEMO_QUESTIONS = [
    "How do I back up a database while it is in use?",
    "Why does a table need VACUUM?",
    "Which index types does PostgreSQL have?",
    "How does full text search match words?",
]


class Command(BaseCommand):
    help = (
        "Load the demo knowledge base (twelve pages of the PostgreSQL manual); unchanged files are skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--now", action="store_true", help="index in this process instead of by a worker")

    def handle(self, *args: Any, **options: Any) -> None:
        collection = services.collection_get_or_create(
            slug=DEMO_SLUG, name="PostgreSQL manual (demo)", visibility=Collection.Visibility.PUBLIC
        )
        if not collection.example_questions:
            collection.example_questions = "\n".join(DEMO_QUESTIONS)
            collection.save(update_fields=["example_questions", "updated_at"])
        counts = {"created": 0, "updated": 0, "unchanged": 0, "rejected": 0}
        refused: list[str] = []
        for item in services.documents_import(
            collection=collection,
            files=[(path.name, path.read_bytes) for path in sorted(DEMO_FOLDER.glob("*.html"))],
            index_now=options["now"],
        ):
            counts[item.outcome] += 1
            if item.outcome == "rejected":
                refused.append(item.message)
        self.stdout.write(
            f"Demo collection {collection.slug}: {counts['created']} added, {counts['updated']} updated, "
            f"{counts['unchanged']} unchanged"
            + (f", {counts['rejected']} not added" if refused else "")
            + "."
        )
        if refused:
            raise CommandError("Not added: " + " ".join(refused))
