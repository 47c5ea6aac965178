import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from knowledge.embeddings import HASHING
from knowledge.models import Collection, Document
from tests.factories import CollectionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def public():
    return CollectionFactory(slug="public", visibility=Collection.Visibility.PUBLIC, embedding_model=HASHING)


@pytest.fixture
def secret():
    return CollectionFactory(
        slug="secret", visibility=Collection.Visibility.RESTRICTED, embedding_model=HASHING
    )


def upload(api, token, collection, *files, **extra):
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return api.post(
        "/api/documents/", {"collection": collection, "files": list(files), **extra}, format="multipart"
    )


def test_staff_upload_many_files_at_once_and_see_them_indexed(
    api, staff_token, public, django_capture_on_commit_callbacks
):
    files = [SimpleUploadedFile(f"page{i}.md", f"# Page {i}\n\nText number {i}.".encode()) for i in range(3)]

    with django_capture_on_commit_callbacks(execute=True):
        response = upload(api, staff_token, "public", *files)

    assert response.status_code == 201
    assert [item["outcome"] for item in response.json()] == ["created"] * 3
    listing = api.get("/api/documents/", {"collection": "public", "status": "READY"}).json()
    assert listing["count"] == 3
    document = listing["results"][0]
    assert document["progress"] == 1.0 and document["chunk_count"] == 1
    chunks = api.get(f"/api/documents/{document['id']}/chunks/").json()
    assert chunks["results"][0]["text"].startswith("Text number")


def test_uploading_the_same_bytes_again_reports_the_existing_document(api, staff_token, public):
    content = b"# Same\n\nIdentical bytes."
    first = upload(api, staff_token, "public", SimpleUploadedFile("a.md", content)).json()[0]

    response = upload(api, staff_token, "public", SimpleUploadedFile("b.md", content))
    again = response.json()[0]

    assert response.status_code == 200  # nothing was created
    assert again["outcome"] == "unchanged"
    assert again["document"]["id"] == first["document"]["id"]
    assert Document.objects.count() == 1


def test_a_file_over_the_limit_is_refused_by_name_and_the_others_are_stored(
    api, staff_token, public, settings
):
    settings.KNOWLEDGE_MAX_UPLOAD_BYTES = 1000
    small = SimpleUploadedFile("small.txt", b"fits")
    large = SimpleUploadedFile("large.txt", b"x" * 1001)

    response = upload(api, staff_token, "public", small, large)

    assert response.status_code == 201
    assert [(item["name"], item["outcome"]) for item in response.json()] == [
        ("small.txt", "created"),
        ("large.txt", "rejected"),
    ]
    assert "large.txt" in response.json()[1]["message"] and response.json()[1]["document"] is None
    assert list(Document.objects.values_list("source_name", flat=True)) == ["small.txt"]


def test_when_every_file_is_refused_nothing_is_stored_and_each_is_named(api, staff_token, public, settings):
    settings.KNOWLEDGE_MAX_UPLOAD_BYTES = 1000

    too_large = upload(api, staff_token, "public", SimpleUploadedFile("large.txt", b"x" * 1001))
    empty = upload(
        api,
        staff_token,
        "public",
        SimpleUploadedFile("empty.md", b""),
        SimpleUploadedFile("big.md", b"y" * 1001),
    )

    assert too_large.status_code == 413 and "large.txt" in too_large.json()["detail"]
    assert empty.status_code == 422
    assert [f["name"] for f in empty.json()["details"]["files"]] == ["empty.md", "big.md"]
    assert "empty" in empty.json()["details"]["files"][0]["reason"]
    assert Document.objects.count() == 0


def test_an_empty_file_among_others_is_named_and_the_rest_are_stored(api, staff_token, public):
    response = upload(
        api,
        staff_token,
        "public",
        SimpleUploadedFile("notes.md", b"# Notes\n\nText."),
        SimpleUploadedFile("blank.md", b""),
    )

    assert response.status_code == 201
    assert [(item["name"], item["outcome"]) for item in response.json()] == [
        ("notes.md", "created"),
        ("blank.md", "rejected"),
    ]
    assert "blank.md is empty" in response.json()[1]["message"]


def test_a_refused_file_between_others_is_named_and_only_the_others_are_stored_and_indexed(
    api, staff_token, public, settings, django_capture_on_commit_callbacks
):
    settings.KNOWLEDGE_MAX_UPLOAD_BYTES = 1000
    files = [
        SimpleUploadedFile("first.md", b"# First\n\nThe first page."),
        SimpleUploadedFile("large.txt", b"x" * 1001),
        SimpleUploadedFile("last.md", b"# Last\n\nThe last page."),
    ]

    with django_capture_on_commit_callbacks(execute=True):
        response = upload(api, staff_token, "public", *files)

    body = response.json()
    assert response.status_code == 201
    assert [(item["name"], item["outcome"]) for item in body] == [
        ("first.md", "created"),
        ("large.txt", "rejected"),
        ("last.md", "created"),
    ]
    assert body[1]["message"] == "large.txt is larger than the limit of 1,000 bytes."
    assert body[1]["document"] is None
    stored = dict(Document.objects.values_list("source_name", "status"))
    assert stored == {"first.md": Document.Status.READY, "last.md": Document.Status.READY}
    assert {body[0]["document"]["id"], body[2]["document"]["id"]} == set(
        Document.objects.values_list("pk", flat=True)
    )


def test_a_file_already_there_and_a_refused_one_answer_200_and_store_nothing_new(api, staff_token, public):
    upload(api, staff_token, "public", SimpleUploadedFile("kept.md", b"# Kept\n\nAlready here."))

    response = upload(
        api,
        staff_token,
        "public",
        SimpleUploadedFile("kept.md", b"# Kept\n\nAlready here."),
        SimpleUploadedFile("blank.md", b""),
    )

    assert response.status_code == 200
    assert [(item["name"], item["outcome"]) for item in response.json()] == [
        ("kept.md", "unchanged"),
        ("blank.md", "rejected"),
    ]
    assert list(Document.objects.values_list("source_name", "version")) == [("kept.md", 1)]


def test_a_title_with_many_files_is_refused_and_none_of_them_is_stored(api, staff_token, public):
    response = upload(
        api,
        staff_token,
        "public",
        SimpleUploadedFile("a.md", b"# A\n\nText."),
        SimpleUploadedFile("b.md", b"# B\n\nText."),
        title="Both",
    )

    assert response.status_code == 422
    assert response.json()["detail"] == "A title can only be given when one file is uploaded."
    assert not Document.objects.exists()


def test_upload_without_files_is_a_clear_400(api, staff_token, public):
    api.credentials(HTTP_AUTHORIZATION=f"Token {staff_token}")

    response = api.post("/api/documents/", {"collection": "public"}, format="multipart")

    assert response.status_code == 400
    assert response.json()["detail"].startswith("files: ")
    assert "files" in response.json()["details"]["fields"]


def test_readers_read_but_do_not_write(api, reader_token, public):
    response = upload(api, reader_token, "public", SimpleUploadedFile("x.md", b"# X\n\ny"))

    assert response.status_code == 403
    assert api.get("/api/collections/").status_code == 200


def test_a_collection_the_reader_may_not_read_is_404_everywhere(
    api, reader_token, staff_token, secret, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        document_id = upload(
            api, staff_token, "secret", SimpleUploadedFile("s.md", b"# S\n\nclassified")
        ).json()[0]["document"]["id"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {reader_token}")

    assert api.get("/api/collections/secret/").status_code == 404
    assert api.get(f"/api/documents/{document_id}/").status_code == 404
    assert api.get(f"/api/documents/{document_id}/chunks/").status_code == 404
    assert api.get(f"/api/documents/{document_id}/download/").status_code == 404
    assert api.get("/api/documents/").json()["count"] == 0
    assert "secret" not in [c["slug"] for c in api.get("/api/collections/").json()["results"]]


def test_granting_a_user_makes_the_collection_readable(api, reader, reader_token, secret):
    secret.allowed_users.add(reader)
    api.credentials(HTTP_AUTHORIZATION=f"Token {reader_token}")

    assert api.get("/api/collections/secret/").status_code == 200


def test_staff_create_collections_and_delete_documents(api, staff_token, django_capture_on_commit_callbacks):
    api.credentials(HTTP_AUTHORIZATION=f"Token {staff_token}")
    created = api.post("/api/collections/", {"name": "Handbook", "visibility": "public"}, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        document = upload(api, staff_token, "handbook", SimpleUploadedFile("h.md", b"# H\n\nhello")).json()[
            0
        ]["document"]

    deleted = api.delete(f"/api/documents/{document['id']}/")

    assert created.status_code == 201 and created.json()["slug"] == "handbook"
    assert deleted.status_code == 204
    assert Document.objects.count() == 0


def test_duplicate_collection_name_is_409(api, staff_token, public):
    api.credentials(HTTP_AUTHORIZATION=f"Token {staff_token}")

    response = api.post("/api/collections/", {"name": public.name, "slug": "another"}, format="json")

    assert response.status_code == 409


def test_reingest_and_download_the_original(api, staff_token, public, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        document = upload(
            api, staff_token, "public", SimpleUploadedFile("r.md", b"# R\n\nreindex me")
        ).json()[0]["document"]

    with django_capture_on_commit_callbacks(execute=True):
        reingested = api.post(f"/api/documents/{document['id']}/reingest/")
    download = api.get(f"/api/documents/{document['id']}/download/")

    assert reingested.status_code == 202
    assert Document.objects.get(pk=document["id"]).status == Document.Status.READY
    assert b"".join(download.streaming_content) == b"# R\n\nreindex me"


def test_anonymous_requests_are_401(api, public):
    assert api.get("/api/collections/").status_code == 401
    assert api.get("/api/documents/").status_code == 401
