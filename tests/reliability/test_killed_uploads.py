"""A process killed in the middle of an upload leaves no row, and its file does not stay on disk for good."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import DatabaseError, connection

from knowledge import services as knowledge_services
from knowledge.models import Document
from tests.factories import CollectionFactory

ROOT = Path(__file__).resolve().parents[2]

KILLED_AFTER_THE_FILE_IS_WRITTEN = """
import os, signal, sys, django
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
django.setup()
from django.db import connection
connection.settings_dict["NAME"] = sys.argv[1]
from knowledge import services
from knowledge.models import Collection, Document

def killed(self, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # the file is on disk, the row is not committed

Document.save = killed
services.document_add(collection=Collection.objects.get(slug=sys.argv[2]), name="half.md", content=b"# Half\\n\\nx")
"""


def _stored_files() -> set[str]:
    root = Path(settings.MEDIA_ROOT)
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


@pytest.mark.django_db(transaction=True)
def test_a_process_killed_mid_upload_leaves_no_row_and_the_sweep_removes_its_file():
    collection = CollectionFactory(slug="killed")
    kept = knowledge_services.document_add(
        collection=collection, name="kept.md", content=b"# Kept\n\nstays", enqueue=False
    )
    env = {**os.environ, "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT)}

    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_AFTER_THE_FILE_IS_WRITTEN,
            connection.settings_dict["NAME"],
            collection.slug,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    left = _stored_files()
    too_young = knowledge_services.document_files_sweep()  # an hour's grace for uploads still committing
    removed = knowledge_services.document_files_sweep(older_than=timedelta(0))

    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not Document.objects.filter(source_name="half.md").exists()
    assert len(left) == 2 and kept.document.file.name in left
    assert too_young == []
    assert removed == [name for name in left if name != kept.document.file.name]
    assert _stored_files() == {kept.document.file.name}


@pytest.mark.django_db
def test_an_add_whose_transaction_rolls_back_removes_the_file_it_wrote(monkeypatch):
    collection = CollectionFactory(slug="rolled-back")

    def failing_save(self, *args, **kwargs):
        raise DatabaseError("the database went away")

    monkeypatch.setattr(Document, "save", failing_save)
    with pytest.raises(DatabaseError):
        knowledge_services.document_add(collection=collection, name="lost.md", content=b"# Lost\n\nx")

    assert _stored_files() == set()


@pytest.mark.django_db(transaction=True)  # real commits, so that the hooks run inside document_add
def test_a_failure_after_the_commit_never_removes_a_committed_documents_file(monkeypatch):
    from knowledge.services import indexing

    collection = CollectionFactory(slug="sent-after-commit")

    def failing_send(*, document_id, **options):
        raise RuntimeError("something unexpected after the commit")

    monkeypatch.setattr(indexing, "document_send", failing_send)
    with pytest.raises(RuntimeError):
        knowledge_services.document_add(collection=collection, name="kept.md", content=b"# Kept\n\nx")

    document = Document.objects.get(source_name="kept.md")
    assert document.file.storage.exists(document.file.name)
