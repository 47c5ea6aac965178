import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from knowledge import services
from knowledge.embeddings import HASHING
from knowledge.models import Collection, Document
from tests.factories import CollectionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, staff_user):
    staff_user.is_superuser = True
    staff_user.save()
    client.force_login(staff_user)
    return client


@pytest.fixture
def collection():
    return CollectionFactory(slug="manual", embedding_model=HASHING)


def test_staff_upload_many_files_into_a_collection(
    staff_client, collection, django_capture_on_commit_callbacks
):
    files = [SimpleUploadedFile(f"p{i}.md", f"# P{i}\n\nbody {i}".encode()) for i in range(4)]

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("admin:knowledge_collection_upload", args=[collection.pk]), {"documents": files}
        )

    assert response.status_code == 302
    assert Document.objects.filter(collection=collection, status=Document.Status.READY).count() == 4


def test_an_empty_file_in_an_admin_upload_is_named_and_the_other_files_are_added(
    staff_client, collection, django_capture_on_commit_callbacks
):
    files = [
        SimpleUploadedFile("first.md", b"# First\n\nbody"),
        SimpleUploadedFile("blank.md", b""),
        SimpleUploadedFile("last.md", b"# Last\n\nbody"),
    ]

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("admin:knowledge_collection_upload", args=[collection.pk]),
            {"documents": files},
            follow=True,
        )

    page = response.content.decode()
    assert set(Document.objects.values_list("source_name", flat=True)) == {"first.md", "last.md"}
    assert "Not added: blank.md is empty" in page
    assert "2 added, 0 updated, 0 unchanged, 1 not added" in page


def test_an_admin_upload_with_a_file_over_the_limit_names_it_and_adds_the_rest(
    staff_client, collection, settings, django_capture_on_commit_callbacks
):
    settings.KNOWLEDGE_MAX_UPLOAD_BYTES = 1000
    with django_capture_on_commit_callbacks(execute=True):
        services.document_add(collection=collection, name="kept.md", content=b"# Kept\n\nbody")
    files = [
        SimpleUploadedFile("kept.md", b"# Kept\n\nbody"),
        SimpleUploadedFile("large.txt", b"x" * 1001),
        SimpleUploadedFile("new.md", b"# New\n\nbody"),
    ]

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("admin:knowledge_collection_upload", args=[collection.pk]),
            {"documents": files},
            follow=True,
        )

    page = response.content.decode()
    assert response.redirect_chain[-1][0].endswith(f"?collection__id__exact={collection.pk}")
    assert "Not added: large.txt is larger than the limit of 1,000 bytes." in page
    assert "1 added, 0 updated, 1 unchanged, 1 not added (named above)" in page
    assert dict(Document.objects.values_list("source_name", "status")) == {
        "kept.md": Document.Status.READY,
        "new.md": Document.Status.READY,
    }


def test_document_list_shows_status_progress_and_errors(
    staff_client, collection, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.document_add(collection=collection, name="bad.txt", content=b"\x00\x01binary\x02" * 50)
    pending = services.document_add(
        collection=collection, name="later.md", content=b"# L\n\nlater", enqueue=False
    )
    Document.objects.filter(pk=pending.document.pk).update(status=Document.Status.PROCESSING, progress=0.42)

    response = staff_client.get(reverse("admin:knowledge_document_changelist"))

    page = response.content.decode()
    assert "Unsupported type" in page
    assert '<progress value="42"' in page
    assert '<meta http-equiv="refresh"' in page


def test_document_page_lists_its_chunks(staff_client, collection, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        added = services.document_add(
            collection=collection, name="m.md", content=b"# Guide\n\n## Setup\n\nInstall it first."
        )

    response = staff_client.get(reverse("admin:knowledge_document_change", args=[added.document.pk]))

    page = response.content.decode()
    assert "Install it first." in page
    assert "Guide › Setup" in page


def test_test_search_page_ranks_chunks_with_scores(
    staff_client, collection, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.document_add(
            collection=collection, name="v.md", content=b"# Vacuum\n\nVACUUM reclaims dead tuples."
        )
        services.document_add(
            collection=collection, name="b.md", content=b"# Backup\n\npg_dump makes backups."
        )

    response = staff_client.get(
        reverse("admin:knowledge_search"),
        {"query": "vacuum", "collections": [collection.pk], "mode": "hybrid", "fusion": "rrf", "limit": 5},
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert (
        page.index("VACUUM reclaims dead tuples.") < page.index("pg_dump makes backups.")
        if "pg_dump" in page
        else True
    )
    assert "VACUUM reclaims dead tuples." in page


def test_reingest_action_queues_documents_again(staff_client, collection, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        added = services.document_add(collection=collection, name="m.md", content=b"# M\n\nmore")
    Document.objects.filter(pk=added.document.pk).update(status=Document.Status.FAILED, error="old failure")

    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(
            reverse("admin:knowledge_document_changelist"),
            {"action": "reingest_action", "_selected_action": [added.document.pk]},
        )

    document = Document.objects.get(pk=added.document.pk)
    assert document.status == Document.Status.READY and document.error == ""


def test_reembed_action_asks_for_the_model_then_starts(
    staff_client, collection, django_capture_on_commit_callbacks
):
    url = reverse("admin:knowledge_collection_changelist")

    form_page = staff_client.post(url, {"action": "reembed_action", "_selected_action": [collection.pk]})
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(
            url,
            {"action": "reembed_action", "_selected_action": [collection.pk], "apply": "1", "model": HASHING},
        )

    assert b"Start re-embedding" in form_page.content
    assert Collection.objects.get(pk=collection.pk).reembed_target_model == ""  # same model: finished at once


def test_reembed_with_an_unknown_model_is_refused_with_the_reason(staff_client, collection):
    url = reverse("admin:knowledge_collection_changelist")

    response = staff_client.post(
        url,
        {
            "action": "reembed_action",
            "_selected_action": [collection.pk],
            "apply": "1",
            "model": "no-such-model",
        },
        follow=True,
    )

    assert "is not installed" in response.content.decode()
    assert Collection.objects.get(pk=collection.pk).reembed_target_model == ""
