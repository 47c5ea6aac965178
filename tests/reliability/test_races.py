"""Rows deleted while an answer that needs them is being made, and concurrent questions against the rate limit."""

import threading

import pytest
from django.db import connection

from chat import services
from chat.models import Citation, Conversation, Message
from knowledge import services as knowledge_services
from knowledge.models import Document
from tests.sse import sse_events

pytestmark = pytest.mark.django_db(transaction=True)


def _delete_while_answering(llm_server, delete):
    """The LLM stand-in runs `delete` (on its own database connection, as another request would) while it is
    making the answer, then answers."""
    original = llm_server.responder

    def responder(messages):
        if "Standalone question:" not in messages[-1]["content"]:
            delete()
            connection.close()
        return original(messages)

    llm_server.responder = responder


def test_a_conversation_deleted_while_its_answer_is_made_gives_404_and_leaves_no_rows(
    api, manual, llm_server
):
    first = api.post("/api/chat/ask", {"question": "How do I take a backup?"}, format="json").json()
    conversation_id = first["conversation_id"]
    _delete_while_answering(llm_server, lambda: Conversation.objects.filter(pk=conversation_id).delete())

    response = api.post(
        "/api/chat/ask",
        {"question": "Does it block other users?", "conversation_id": conversation_id},
        format="json",
    )

    assert response.status_code == 404
    assert response.json()["code"] == "ConversationGone"
    assert not Conversation.objects.filter(pk=conversation_id).exists()
    assert not Message.objects.filter(conversation_id=conversation_id).exists()


def test_the_stream_says_in_place_that_the_conversation_was_deleted(api, manual, llm_server):
    first = api.post("/api/chat/ask", {"question": "How do I take a backup?"}, format="json").json()
    conversation_id = first["conversation_id"]
    _delete_while_answering(llm_server, lambda: Conversation.objects.filter(pk=conversation_id).delete())

    response = api.post(
        "/api/chat/ask",
        {"question": "Does it block other users?", "conversation_id": conversation_id, "stream": True},
        format="json",
    )

    events = sse_events(response)
    assert events[-1][0] == "error"
    assert events[-1][1]["status"] == 404 and "deleted" in events[-1][1]["detail"]
    assert not Message.objects.filter(conversation_id=conversation_id).exists()


def test_a_document_deleted_while_an_answer_cites_it_leaves_the_citation_without_its_link(
    api, manual, llm_server
):
    backup = Document.objects.get(source_name="backup.md")
    backup_id = backup.pk
    _delete_while_answering(llm_server, lambda: knowledge_services.document_delete(document=backup))

    response = api.post(
        "/api/chat/ask", {"question": "Can I back up while the database is in use?"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["message"]["outcome"] == "answered", response.json()["message"]["text"]
    citations = Citation.objects.filter(message_id=response.json()["message"]["id"])
    assert citations.exists()
    assert not Document.objects.filter(pk=backup_id).exists()
    assert all(c.document_id != backup_id for c in citations)
    assert citations.filter(
        document_id=None, chunk_id=None
    ).exists()  # the deleted one, kept without its link


def test_a_document_deleted_while_it_is_indexed_ends_quietly(
    manual, monkeypatch, django_capture_on_commit_callbacks
):
    from knowledge.services import indexing

    collection = manual
    added = knowledge_services.document_add(
        collection=collection, name="late.md", content=b"# Late\n\nDeleted during indexing.", enqueue=False
    )
    embed = indexing._embed

    def embed_then_delete(*args, **kwargs):
        vectors = embed(*args, **kwargs)
        # Parsed and embedded, not yet written.
        knowledge_services.document_delete(document=added.document)
        return vectors

    monkeypatch.setattr(indexing, "_embed", embed_then_delete)

    knowledge_services.documents_index(document_ids=[added.document.pk])

    assert not Document.objects.filter(pk=added.document.pk).exists()


def test_concurrent_questions_do_not_overshoot_the_rate_limit(manual, reader, settings):
    settings.CHAT_RATE_LIMIT = 5
    settings.CHAT_RATE_WINDOW = 3600
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def ask():
        barrier.wait()
        try:
            for _ in services.question_ask_stream(user=reader, question="How do I take a backup?"):
                pass
            outcomes.append("answered")
        except services.TooManyQuestions:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes.count("answered") == 5 and outcomes.count("refused") == 3
    assert Message.objects.filter(role=Message.Role.USER).count() == 5


def test_the_database_nulls_a_citations_links_when_its_chunk_or_document_goes_under_it(api, manual):
    asked = api.post("/api/chat/ask", {"question": "How do I take a backup?"}, format="json").json()
    cited = Citation.objects.filter(message_id=asked["message"]["id"]).exclude(chunk_id=None).first()
    assert cited is not None

    with connection.cursor() as cursor:  # as a delete whose collector looked before this citation was stored
        cursor.execute("DELETE FROM knowledge_chunk WHERE document_id = %s", [cited.document_id])
        cursor.execute("DELETE FROM knowledge_documenttext WHERE document_id = %s", [cited.document_id])
        cursor.execute("DELETE FROM knowledge_document WHERE id = %s", [cited.document_id])

    cited.refresh_from_db()
    assert cited.chunk_id is None and cited.document_id is None
    assert cited.quote  # the quote as it was is kept


def test_a_conversation_deleted_while_an_answer_is_stored_is_deleted_whole(api, manual, llm_server):
    first = api.post("/api/chat/ask", {"question": "How do I take a backup?"}, format="json").json()
    conversation = Conversation.objects.get(pk=first["conversation_id"])

    services.conversation_delete(conversation=conversation)
    services.conversation_delete(conversation=conversation)  # again: already gone, nothing to do

    assert not Conversation.objects.filter(pk=first["conversation_id"]).exists()
    assert not Message.objects.filter(conversation_id=first["conversation_id"]).exists()


def test_uploads_to_a_collection_do_not_wait_for_a_large_document_being_written(manual):
    from django.db import transaction

    from knowledge.services.indexing import collection_share_lock

    added: list[str] = []

    def upload():
        try:
            result = knowledge_services.document_add(
                collection=manual, name="during.md", content=b"# During\n\nAdded while another is written.",
                enqueue=False,
            )  # fmt: skip
            added.append(result.outcome)
        finally:
            connection.close()

    with transaction.atomic():
        assert collection_share_lock(manual.pk) is not None  # what writing a document's chunks holds
        thread = threading.Thread(target=upload)
        thread.start()
        thread.join(timeout=20)
        finished_while_held = not thread.is_alive()
    thread.join()

    assert finished_while_held and added == ["created"]


def test_a_reembed_switch_waits_for_a_document_being_written(manual):
    from django.db import OperationalError, transaction

    from knowledge.services.indexing import collection_share_lock
    from knowledge.services.reembed import _reembed_switch

    outcome: list[str] = []

    def switch():
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = '500ms'")
                _reembed_switch(manual.pk, manual.embedding_model)
            outcome.append("switched")
        except OperationalError as exc:
            outcome.append(f"waited: {exc}")
        finally:
            connection.close()

    with transaction.atomic():
        collection_share_lock(manual.pk)
        thread = threading.Thread(target=switch)
        thread.start()
        thread.join(timeout=20)

    assert len(outcome) == 1 and outcome[0].startswith("waited") and "lock timeout" in outcome[0]
