import os
from pathlib import Path
from typing import Any

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def ensure_file_broker_folders(broker_url: str, options: dict[str, Any]) -> None:
    """The file broker (used when no CELERY_BROKER_URL is set) needs its folders before the first message."""
    if str(broker_url).startswith("filesystem://"):
        for key in ("data_folder_in", "data_folder_out", "control_folder"):
            if options.get(key):
                Path(options[key]).mkdir(parents=True, exist_ok=True)


@app.on_after_configure.connect
def _create_file_broker_folders(sender: Celery, **kwargs: Any) -> None:
    ensure_file_broker_folders(sender.conf.broker_url, sender.conf.broker_transport_options or {})
