import openai
import pytest
from rest_framework.test import APIClient

from chat.models import Conversation, Feedback, Message
from tests.factories import CollectionFactory, UserFactory
from tests.sse import sse_events

pytestmark = pytest.mark.django_db


def test_ask_returns_the_answer_with_citations_and_ids(api, manual):
    response = api.post(
        "/api/chat/ask", {"question": "Can I take a backup while people use the database?"}, format="json"
    )

    body = response.json()
    assert response.status_code == 200
    message = body["message"]
    assert message["outcome"] == "answered" and message["answer_mode"] == "extractive"
    assert "pg_dump" in message["text"]
    cited = [c for c in message["citations"] if c["cited"]]
    assert cited and cited[0]["title"] == "Backup and Restore" and cited[0]["chunk_id"]
    assert Message.objects.filter(pk=message["id"], role="assistant").exists()
    assert Conversation.objects.get(pk=body["conversation_id"]).title.startswith("Can I take a backup")


def test_ask_streams_server_sent_events_ending_with_the_stored_answer(api, manual, llm_server):
    response = api.post(
        "/api/chat/ask",
        {"question": "Can I back up while the database is in use?", "stream": True},
        format="json",
    )

    events = sse_events(response)
    names = [name for name, _ in events]
    assert response["Content-Type"].startswith("text/event-stream")
    assert names[0] == "start" and names[-1] == "done"
    assert names.count("token") > 3
    streamed = "".join(data["text"] for name, data in events if name == "token")
    done = events[-1][1]["message"]
    assert streamed.strip() == done["text"]
    assert done["answer_mode"] == llm_server.model


def test_a_json_answer_asks_the_llm_for_one_complete_response_and_a_streamed_one_for_a_stream(
    api, manual, llm_server
):
    whole = api.post(
        "/api/chat/ask", {"question": "Can I back up while the database is in use?"}, format="json"
    )
    streamed = api.post(
        "/api/chat/ask", {"question": "Does VACUUM FULL return space?", "stream": True}, format="json"
    )
    assert sse_events(streamed)[-1][0] == "done"

    answer_requests = [r["body"] for r in llm_server.requests if r["path"].endswith("/chat/completions")]
    message = whole.json()["message"]
    assert [bool(body.get("stream")) for body in answer_requests[-2:]] == [False, True]
    assert message["answer_mode"] == llm_server.model and message["outcome"] == "answered"
    assert any(c["cited"] for c in message["citations"])
    stored = Message.objects.get(pk=message["id"])
    assert stored.trace["tokens"]["completion"] > 0


def test_a_whole_answer_may_take_longer_than_the_wait_for_the_next_streamed_piece(
    api, manual, llm_server, settings
):
    llm_server.delay = 0.6  # the stand-in thinks this long before it sends anything
    settings.CHAT_LLM_TIMEOUT = 0.3
    settings.CHAT_LLM_ANSWER_TIMEOUT = 5.0
    question = {"question": "Can I back up while the database is in use?"}

    patient = api.post("/api/chat/ask", question, format="json").json()["message"]
    settings.CHAT_LLM_ANSWER_TIMEOUT = 0.2
    impatient = api.post("/api/chat/ask", question, format="json").json()["message"]

    assert patient["outcome"] == "answered" and patient["answer_mode"] == llm_server.model
    assert impatient["outcome"] == "failed" and "did not answer in time" in impatient["text"]
    assert impatient["citations"]  # the sources are still shown


def test_a_follow_up_in_the_same_conversation_is_rewritten(api, manual):
    first = api.post("/api/chat/ask", {"question": "How does pg_dump make backups?"}, format="json").json()

    second = api.post(
        "/api/chat/ask",
        {"question": "Does it block other users?", "conversation_id": first["conversation_id"]},
        format="json",
    ).json()

    assert second["conversation_id"] == first["conversation_id"]
    assert second["rewritten_question"] == "How does pg_dump make backups? Does it block other users?"


def test_conversations_are_listed_read_renamed_and_deleted(api, manual):
    asked = api.post("/api/chat/ask", {"question": "How do I restore a dump?"}, format="json").json()
    conversation_id = asked["conversation_id"]

    listing = api.get("/api/chat/conversations").json()
    detail = api.get(f"/api/chat/conversations/{conversation_id}").json()
    renamed = api.patch(
        f"/api/chat/conversations/{conversation_id}", {"title": "Restores"}, format="json"
    ).json()
    deleted = api.delete(f"/api/chat/conversations/{conversation_id}")

    assert listing["count"] == 1 and listing["items"][0]["id"] == conversation_id
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
    assert renamed["title"] == "Restores"
    assert deleted.status_code == 204
    assert not Conversation.objects.filter(pk=conversation_id).exists()


def test_feedback_on_an_answer_is_stored_and_can_be_changed(api, manual, reader):
    asked = api.post("/api/chat/ask", {"question": "How do I restore a dump?"}, format="json").json()
    message_id = asked["message"]["id"]

    api.post(f"/api/chat/messages/{message_id}/feedback", {"rating": 1}, format="json")
    changed = api.post(
        f"/api/chat/messages/{message_id}/feedback", {"rating": -1, "comment": "too short"}, format="json"
    )

    assert changed.status_code == 200
    feedback = Feedback.objects.get(message_id=message_id, user=reader)
    assert (feedback.rating, feedback.comment) == (-1, "too short")


def test_feedback_rating_must_be_up_or_down(api, manual):
    asked = api.post("/api/chat/ask", {"question": "How do I restore a dump?"}, format="json").json()

    response = api.post(f"/api/chat/messages/{asked['message']['id']}/feedback", {"rating": 5}, format="json")

    assert response.status_code == 422


def test_another_users_conversation_is_404(api, manual):
    other = UserFactory()
    conversation = Conversation.objects.create(owner=other, title="theirs")
    message = Message.objects.create(
        conversation=conversation, role="assistant", text="x", outcome="answered"
    )

    assert api.get(f"/api/chat/conversations/{conversation.pk}").status_code == 404
    assert (
        api.post(
            "/api/chat/ask", {"question": "more?", "conversation_id": conversation.pk}, format="json"
        ).status_code
        == 404
    )
    assert (
        api.post(f"/api/chat/messages/{message.pk}/feedback", {"rating": 1}, format="json").status_code == 404
    )
    assert api.delete(f"/api/chat/conversations/{conversation.pk}").status_code == 404


def test_asking_about_a_collection_the_user_may_not_read_is_404_with_a_reason(api, manual):
    CollectionFactory(slug="secret", visibility="restricted")

    response = api.post("/api/chat/ask", {"question": "anything", "collections": ["secret"]}, format="json")

    assert response.status_code == 404
    assert "may read" in response.json()["detail"]


def test_asking_too_often_is_429_with_retry_after(api, manual, settings):
    settings.CHAT_RATE_LIMIT = 2
    settings.CHAT_RATE_WINDOW = 60
    for _ in range(2):
        api.post("/api/chat/ask", {"question": "How do I restore a dump?"}, format="json")

    response = api.post("/api/chat/ask", {"question": "How do I restore a dump?"}, format="json")

    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60


def test_invalid_questions_are_422(api, manual):
    assert api.post("/api/chat/ask", {"question": ""}, format="json").status_code == 422
    assert api.post("/api/chat/ask", {"question": "x" * 5000}, format="json").status_code == 422
    assert api.post("/api/chat/ask", {}, format="json").status_code == 422


def test_anonymous_callers_are_401(manual):
    assert APIClient().post("/api/chat/ask", {"question": "hi"}, format="json").status_code == 401


# --- OpenAI-compatible, exercised with the real openai client against the live test server -----------------------


@pytest.mark.django_db(transaction=True)
def test_models_lists_one_per_readable_collection_and_one_for_all(openai_client, manual):
    CollectionFactory(slug="secret", visibility="restricted")

    ids = [model.id for model in openai_client.models.list()]

    assert ids == ["knowledge-base", "knowledge-base/manual"]


@pytest.mark.django_db(transaction=True)
def test_chat_completions_answer_with_citations_through_the_openai_client(openai_client, manual):
    completion = openai_client.chat.completions.create(
        model="knowledge-base/manual",
        messages=[{"role": "user", "content": "Can I take a backup while the database is in use?"}],
    )

    content = completion.choices[0].message.content
    extra = completion.model_extra
    assert "pg_dump" in content
    assert "\n\nSources:\n[1] Backup and Restore" in content or "Sources:" in content
    assert extra["citations"][0]["title"] in {"Backup and Restore", "Routine Vacuuming"}
    assert extra["outcome"] == "answered"


@pytest.mark.django_db(transaction=True)
def test_chat_completions_stream_in_the_openai_chunk_format(openai_client, manual, llm_server):
    stream = openai_client.chat.completions.create(
        model="knowledge-base",
        messages=[
            {"role": "user", "content": "How does pg_dump work?"},
            {"role": "assistant", "content": "It makes consistent backups."},
            {"role": "user", "content": "Does it block other users?"},
        ],
        stream=True,
    )

    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    last = chunks[-1]
    assert len(chunks) > 4
    assert last.choices[0].finish_reason == "stop"
    assert last.model_extra["citations"]
    assert "[1]" in text and "Sources:" in text
    rewrite_request = llm_server.requests[0]["body"]["messages"][1]["content"]
    assert "user: How does pg_dump work?" in rewrite_request


@pytest.mark.django_db(transaction=True)
def test_chat_completions_errors_come_back_in_the_openai_error_format(openai_client, manual):
    with pytest.raises(openai.BadRequestError) as unknown_model:
        openai_client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        openai_client.chat.completions.create(
            model="knowledge-base/secret", messages=[{"role": "user", "content": "hi"}]
        )

    assert "Unknown model" in str(unknown_model.value)


@pytest.mark.django_db(transaction=True)
def test_a_conversation_sent_with_a_huge_message_is_refused_and_stores_nothing(
    openai_client, manual, llm_server
):
    from chat.models import Message

    huge = "x " * 1_500_000  # 3 MB: it would become a 3 MB prompt
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client.chat.completions.create(
            model="knowledge-base",
            messages=[
                {"role": "user", "content": huge},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "And how do I restore it?"},
            ],
        )

    assert "at most 20,000 are allowed" in str(refused.value)
    assert not Message.objects.exists() and not llm_server.requests


@pytest.mark.django_db(transaction=True)
def test_only_the_last_turns_of_a_long_conversation_reach_the_language_model(
    openai_client, manual, llm_server
):
    turns = []
    for i in range(30):
        turns += [
            {"role": "user", "content": f"question {i}"},
            {"role": "assistant", "content": f"answer {i}"},
        ]

    openai_client.chat.completions.create(
        model="knowledge-base",
        messages=[*turns, {"role": "user", "content": "And does it block other users?"}],
    )

    rewrite_request = llm_server.requests[0]["body"]["messages"][1]["content"]
    assert "answer 29" in rewrite_request and "question 0\n" not in rewrite_request
    assert len(rewrite_request) < 2000
