"""A language model that stops part-way or says nothing: stored and shown as failed, never as an answer."""

import openai
import pytest

from chat.models import Message
from tests.sse import sse_events

QUESTION = "Can I back up while the database is in use?"


@pytest.mark.django_db
@pytest.mark.parametrize(("failure", "stream"), [("cut", True), ("empty", True), ("empty", False)])
def test_a_cut_or_empty_answer_is_stored_as_failed_with_the_sources(api, manual, llm_server, failure, stream):
    llm_server.failure = failure

    response = api.post("/api/chat/ask", {"question": QUESTION, "stream": stream}, format="json")

    message = sse_events(response)[-1][1]["message"] if stream else response.json()["message"]
    stored = Message.objects.get(pk=message["id"])
    assert stored.outcome == Message.Outcome.FAILED == message["outcome"]
    assert message["citations"]
    assert "no language model is configured" not in stored.text
    assert ("cut off" if failure == "cut" else "empty answer") in stored.text


@pytest.mark.django_db(transaction=True)
def test_the_openai_sdk_is_told_when_the_stream_was_cut(openai_client, manual, llm_server):
    llm_server.failure = "cut"
    stream = openai_client.chat.completions.create(
        model="knowledge-base", messages=[{"role": "user", "content": QUESTION}], stream=True
    )

    with pytest.raises(openai.APIError, match="cut off"):
        list(stream)

    assert Message.objects.get(role=Message.Role.ASSISTANT).outcome == Message.Outcome.FAILED


@pytest.mark.django_db(transaction=True)
def test_the_openai_sdk_gets_an_error_with_the_sources_for_an_empty_answer(openai_client, manual, llm_server):
    llm_server.failure = "empty"

    with pytest.raises(openai.APIStatusError) as failed:
        openai_client.chat.completions.create(
            model="knowledge-base", messages=[{"role": "user", "content": QUESTION}]
        )

    assert failed.value.status_code == 503
    assert "empty answer" in failed.value.message
    assert failed.value.body["citations"]


@pytest.mark.django_db(transaction=True)
def test_openai_streams_keep_one_id_honour_max_tokens_and_report_usage(openai_client, manual, llm_server):
    stream = openai_client.chat.completions.create(
        model="knowledge-base",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=77,
    )

    chunks = list(stream)

    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert llm_server.requests[-1]["body"]["max_tokens"] == 77


@pytest.mark.django_db(transaction=True)
def test_an_extractive_completion_reports_its_token_counts(openai_client, manual):
    completion = openai_client.chat.completions.create(
        model="knowledge-base", messages=[{"role": "user", "content": QUESTION}]
    )

    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0


@pytest.mark.django_db(transaction=True)
def test_a_failed_answer_is_not_asked_again_by_a_retrying_sdk(live_server, reader_token, manual, llm_server):
    llm_server.failure = "empty"
    retrying = openai.OpenAI(
        base_url=f"{live_server.url}/api/v1", api_key=reader_token, max_retries=2, timeout=60
    )

    try:
        with pytest.raises(openai.APIStatusError):
            retrying.chat.completions.create(
                model="knowledge-base", messages=[{"role": "user", "content": QUESTION}]
            )
    finally:
        retrying.close()

    assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_client_cannot_raise_the_operators_token_limit(openai_client, manual, llm_server, settings):
    settings.CHAT_LLM_MAX_TOKENS = 300

    openai_client.chat.completions.create(
        model="knowledge-base", messages=[{"role": "user", "content": QUESTION}], max_tokens=100_000
    )

    assert llm_server.requests[-1]["body"]["max_tokens"] == 300
