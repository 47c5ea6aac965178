import json

import pytest
from rest_framework.test import APIClient

from knowledge import services as knowledge_services
from knowledge.embeddings import MINILM
from tests.factories import CollectionFactory

PAGES = {
    "backup.md": "# Backup and Restore\n\npg_dump makes consistent backups even while the database is being used "
    "concurrently. It does not block other users. Restore a dump with psql or pg_restore.",
    "vacuum.md": "# Routine Vacuuming\n\nVACUUM FULL rewrites the table and returns disk space to the operating "
    "system. Plain VACUUM only makes space reusable within the table.",
}


@pytest.fixture
def manual(django_capture_on_commit_callbacks):
    collection = CollectionFactory(slug="manual", embedding_model=MINILM)
    with django_capture_on_commit_callbacks(execute=True):
        for name, text in PAGES.items():
            knowledge_services.document_add(collection=collection, name=name, content=text.encode())
    return collection


@pytest.fixture
def api(reader_token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {reader_token}")
    return client


def sse_events(response):
    body = b"".join(response.streaming_content).decode()
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines.get("event", "message"), json.loads(lines["data"])))
    return events
