"""Questions nobody should send, sent over HTTP to a live server the way clients send them: each gets a clear
answer or a clear refusal, never a server error, and a refused one leaves no row behind."""

import json
import urllib.error
import urllib.request

import pytest
from rest_framework.authtoken.models import Token

from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db(transaction=True)

REFUSED = {
    "nul": "vacuum\u0000",
    "one megabyte": "vacuum " * 150_000,
    "empty": "",
    "whitespace": " \n\t ",
}
ANSWERED = {
    "quote": "'",
    "and": "&",
    "or": "|",
    "not": "!",
    "prefix": ":*",
    "backslash": "\\",
    "all at once": "' & | ! :* \\ ( ) <-> ",
}


def _post(url: str, token: str, body: dict) -> tuple[int, str, str]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


@pytest.fixture
def token(reader):
    return Token.objects.create(user=reader).key


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("question", list(REFUSED.values()), ids=list(REFUSED))
def test_a_question_that_cannot_be_asked_is_refused_with_the_reason(
    live_server, manual, token, question, stream
):
    status, content_type, body = _post(
        f"{live_server.url}/api/chat/ask", token, {"question": question, "stream": stream}
    )

    assert status == 422 and content_type.startswith("application/json")
    assert json.loads(body)["detail"]
    assert Message.objects.count() == 0 and Conversation.objects.count() == 0


@pytest.mark.parametrize("question", list(REFUSED.values()), ids=list(REFUSED))
def test_the_openai_endpoint_refuses_them_in_openais_shape(live_server, manual, token, question):
    status, _, body = _post(
        f"{live_server.url}/api/v1/chat/completions",
        token,
        {"model": "knowledge-base", "messages": [{"role": "user", "content": question}]},
    )

    assert status == 400
    assert json.loads(body)["error"]["message"]
    assert Message.objects.count() == 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("question", list(ANSWERED.values()), ids=list(ANSWERED))
def test_full_text_search_operators_are_only_words(live_server, manual, token, question, stream):
    status, _, body = _post(
        f"{live_server.url}/api/chat/ask", token, {"question": question, "stream": stream}
    )

    assert status == 200, body[-500:]
    outcome = Message.objects.get(role=Message.Role.ASSISTANT).outcome
    assert outcome in (Message.Outcome.ANSWERED, Message.Outcome.NOT_FOUND)
    if stream:
        assert "event: done" in body and "event: error" not in body
