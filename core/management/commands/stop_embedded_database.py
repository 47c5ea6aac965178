"""`manage.py stop_embedded_database`: stop the embedded PostgreSQL the settings start when no DATABASE_URL is set."""

from typing import Any

from django.core.management.base import BaseCommand
from django.db import DEFAULT_DB_ALIAS, connections


class Command(BaseCommand):
    help = (
        "Stop the embedded PostgreSQL server that the settings start when no DATABASE_URL is set, if it runs "
        "(`make run` does on its way out, `make clean-data` before it deletes the data folder). A database server "
        "named by DATABASE_URL is left alone."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        # Only the embedded backend (config.embedded_db) runs a server of its own; core does not import config.
        stop_server = getattr(connections[DEFAULT_DB_ALIAS], "stop_server", None)
        if stop_server is not None and stop_server():
            self.stdout.write("Stopped the embedded database.")
