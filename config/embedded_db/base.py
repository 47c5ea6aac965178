from pathlib import Path
from typing import Any

from django.db.backends.postgresql import base as postgresql

from config.embedded_db import server


class DatabaseWrapper(postgresql.DatabaseWrapper):
    """The PostgreSQL backend, pointed at the embedded server, which it starts on the first connection."""

    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        # The configured database is created once; a test database is left for Django's test runner to create.
        info = server.ensure_running(
            Path(self.settings_dict["PGDATA"]), database=self.settings_dict["CREATE_DB"]
        )
        params.update(host=info.host, port=info.port, user=info.user)
        return params

    def stop_server(self) -> bool:
        """Stop the embedded server of these settings if it runs (`manage.py stop_embedded_database`); returns
        whether one was stopped."""
        self.close()
        return server.stop(Path(self.settings_dict["PGDATA"]))
