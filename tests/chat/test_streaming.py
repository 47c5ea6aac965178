"""The one encoder module: each wire ends a stream that broke after it started with an error in its own shape."""

import json

import pytest
from django.test import RequestFactory

from chat.events import Rewritten, Started, Token
from chat.models import Conversation, Message
from chat.services import ConversationGone
from chat.streaming import UNEXPECTED_ERROR, api_sse, openai_sse, page_sse
from tests.sse import sse_events

pytestmark = pytest.mark.django_db


def _started(reader):
    conversation = Conversation.objects.create(owner=reader, title="Backups")
    question = Message.objects.create(conversation=conversation, role="user", text="How do I take a backup?")
    return Started(conversation=conversation, question=question)


def _broken(started, error):
    yield started
    yield Rewritten(question="How do I take a backup?", rewritten_question="How do I take a backup?")
    yield Token(text="Use pg_dump")
    raise error


def test_the_api_stream_ends_with_the_error_event_the_page_stream_has(reader):
    started = _started(reader)
    request = RequestFactory().post("/api/chat/ask")

    api = sse_events(api_sse(request, _broken(started, ConversationGone("It was deleted."))))
    page = sse_events(page_sse(request, _broken(started, ConversationGone("It was deleted."))))

    error = {"detail": "It was deleted.", "code": "ConversationGone", "status": 404}
    assert [name for name, _ in api] == ["start", "rewritten", "token", "error"]
    assert api[0][1] == {
        "conversation_id": started.conversation.pk,
        "question_id": started.question.pk,
        "title": "Backups",
    }
    assert api[-1][1] == error and page[-1] == ("error", error)
    assert page[0][1]["url"] == f"/conversations/{started.conversation.pk}/"


def test_an_unexpected_failure_ends_the_openai_stream_with_an_error_object_and_no_done(reader, caplog):
    request = RequestFactory().post("/v1/chat/completions")

    response = openai_sse(
        request,
        _broken(_started(reader), RuntimeError("the database went away")),
        model="kb",
        include_usage=False,
    )

    body = b"".join(response.streaming_content).decode()
    chunks = [json.loads(block.removeprefix("data: ")) for block in body.strip().split("\n\n")]
    assert [c["choices"][0]["delta"] for c in chunks[:2]] == [
        {"role": "assistant", "content": ""},
        {"content": "Use pg_dump"},
    ]
    assert (
        chunks[-1]["error"]["message"] == UNEXPECTED_ERROR and chunks[-1]["error"]["type"] == "server_error"
    )
    assert "[DONE]" not in body
    assert "the database went away" in caplog.text
