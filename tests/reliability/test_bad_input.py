"""Texts PostgreSQL cannot store, file names nothing can store, and names that hide what they say."""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from chat.models import Conversation, Feedback, Message
from core.errors import InvalidInput
from knowledge import services as knowledge_services
from knowledge.models import Collection, Document
from tests.factories import CollectionFactory

pytestmark = pytest.mark.django_db

NUL_QUESTION = {"question": "vacuum\u0000"}


@pytest.mark.parametrize("stream", [False, True])
def test_a_nul_in_a_question_is_refused_and_nothing_is_stored(api, manual, stream):
    response = api.post("/api/chat/ask", {**NUL_QUESTION, "stream": stream}, format="json")

    assert response.status_code == 422
    assert "NUL" in response.json()["detail"] and response.json()["code"] == "InvalidText"
    assert Message.objects.count() == 0 and Conversation.objects.count() == 0


def test_a_nul_in_an_openai_request_is_refused_in_openais_error_shape(api, manual):
    response = api.post(
        "/api/v1/chat/completions",
        {"model": "knowledge-base", "messages": [{"role": "user", "content": "vacuum\u0000"}]},
        format="json",
    )

    assert response.status_code == 400
    assert "NUL" in response.json()["error"]["message"]
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert Message.objects.count() == 0


def test_a_nul_in_a_rename_or_a_feedback_comment_is_refused(api, manual):
    asked = api.post("/api/chat/ask", {"question": "How do I take a backup?"}, format="json").json()
    conversation_id, answer_id = asked["conversation_id"], asked["message"]["id"]

    renamed = api.patch(f"/api/chat/conversations/{conversation_id}", {"title": "a\u0000b"}, format="json")
    commented = api.post(
        f"/api/chat/messages/{answer_id}/feedback", {"rating": 1, "comment": "x\u0000"}, format="json"
    )
    keyed = api.post(f"/api/chat/messages/{answer_id}/feedback", {"rating\u0000": 1}, format="json")
    queried = api.get("/api/documents/", {"q": "a\u0000"})

    assert [renamed.status_code, commented.status_code, keyed.status_code, queried.status_code] == [422] * 4
    assert Conversation.objects.get(pk=conversation_id).title.startswith("How do I take a backup")
    assert not Feedback.objects.exists()


def test_a_nul_in_a_page_form_is_refused(client, reader):
    client.force_login(reader)

    response = client.post("/ask/", {"question": "vacuum\u0000"})

    assert response.status_code == 422
    assert Message.objects.count() == 0


@pytest.mark.parametrize("name", ["@@@", "???", "..", "日本語"])
def test_a_file_name_without_storable_characters_is_stored_under_a_safe_name(name):
    collection = CollectionFactory()

    added = knowledge_services.document_add(collection=collection, name=name, content=b"Some plain text.")

    stored = added.document.file.name.rsplit("/", 1)[-1]
    assert added.document.source_name == name
    assert re.fullmatch(r"\w[\w.-]*", stored)
    assert added.document.file.storage.exists(added.document.file.name)


def test_the_api_stores_a_file_named_at_signs(client, staff_user):
    collection = CollectionFactory(slug="odd-names")
    client.force_login(staff_user)

    response = client.post(
        "/api/documents/",
        {"collection": collection.slug, "files": [SimpleUploadedFile("@@@", b"Plain text about backups.")]},
        HTTP_ACCEPT="application/json",
    )

    assert response.status_code == 201, response.content[:300]
    assert Document.objects.get(collection=collection).source_name == "@@@"


def test_the_ingest_command_goes_on_past_odd_names_and_prints_hidden_characters_visibly(tmp_path, capsys):
    (tmp_path / "@@@").write_text("A file whose name has no letters, about replication.")
    (tmp_path / "notes\u202etxt.md").write_text("# Notes\n\nA name with a right-to-left override.")
    (tmp_path / "zzz-after.md").write_text("# After\n\nThe file after the odd ones is still added.")

    with pytest.raises(SystemExit):
        call_command("ingest", str(tmp_path / "@@@"), str(tmp_path), "--collection", "odd")

    out = capsys.readouterr().out
    names = set(Document.objects.values_list("source_name", flat=True))
    assert {"@@@", "zzz-after.md"} <= names
    assert not any("\u202e" in name for name in names)
    assert "FAILED notes?txt.md" in out and "\u202e" not in out


def test_collection_and_conversation_names_refuse_control_characters(api, manual):
    with pytest.raises(InvalidInput, match="control or text-direction"):
        knowledge_services.collection_create(name="#\U0005c606\x18")
    asked = api.post("/api/chat/ask", {"question": "How do I\x18 take a backup?"}, format="json").json()

    renamed = api.patch(
        f"/api/chat/conversations/{asked['conversation_id']}", {"title": "a\x18b"}, format="json"
    )

    assert not Collection.objects.filter(name__contains="\x18").exists()
    assert "\x18" not in Conversation.objects.get(pk=asked["conversation_id"]).title
    assert renamed.status_code == 422


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-anything", "multipart/form-data; boundary=x"]
)
def test_a_nul_in_json_sent_under_another_content_type_is_refused_too(api, manual, content_type):
    # django-ninja reads a JSON body whatever type the request declares.
    response = api.generic(
        "POST", "/api/chat/ask", data='{"question": "vacuum\\u0000"}', content_type=content_type
    )

    assert response.status_code == 422
    assert Message.objects.count() == 0
