"""The authorization matrix: every page and endpoint, asked by four callers, with the status each must get.

The callers: nobody signed in, the *member* (who may read the restricted collection and owns the conversation),
the *outsider* (signed in, may not read that collection, owns nothing), and *staff* (reads every collection, but
another user's conversation is still private). A collection the caller may not read, and a staff-only page
asked by someone else, answer 404 like something that does not exist, so that their existence is not revealed.
Pages are asked with a session, the API with a token. Each cell
runs on a fresh database, so a cell that deletes or changes something cannot change the next one's answer.
"""

from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from rest_framework.authtoken.models import Token

from chat.models import Citation, Conversation, Message
from knowledge import services as knowledge_services
from knowledge.models import Chunk, Collection
from tests.factories import CollectionFactory, UserFactory

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "member", "outsider", "staff")


@dataclass(frozen=True)
class Cell:
    name: str
    method: str
    url: str
    expected: tuple[int, int, int, int]  # anonymous, member, outsider, staff
    data: dict[str, Any] = field(default_factory=dict)
    api: bool = False
    json: bool = False


# `{...}` fields are filled from the world built below. 302 for an anonymous page visit is the redirect to the
# sign-in page (checked below); for the member it is post/redirect/get after a successful form.
MATRIX = [
    # --- Pages (session) --------------------------------------------------------------------------------------
    Cell("conversation list", "get", "/", (302, 200, 200, 200)),
    Cell("conversation page", "get", "/conversations/{conversation}/", (302, 200, 404, 404)),
    Cell("rename", "post", "/conversations/{conversation}/rename/", (302, 302, 404, 404), {"title": "New"}),
    Cell("delete", "post", "/conversations/{conversation}/delete/", (302, 302, 404, 404)),
    Cell("feedback", "post", "/messages/{answer}/feedback/", (302, 302, 404, 404), {"rating": "1"}),
    Cell("cited passage", "get", "/passages/{citation}/", (302, 200, 404, 404)),
    Cell(
        "ask about the restricted collection",
        "post",
        "/ask/",
        (302, 302, 404, 302),
        {"question": "What does the secret page say?", "collections": "{collection_id}"},
    ),
    Cell(
        "ask (streamed) about the restricted collection",
        "post",
        "/ask/stream/",
        (302, 200, 404, 200),
        {"question": "What does the secret page say?", "collections": "{collection_id}"},
    ),
    Cell("analytics", "get", "/analytics/", (302, 404, 404, 200)),
    Cell("models", "get", "/models/", (302, 200, 200, 200)),
    Cell("digit canvas", "get", "/models/digits/", (302, 200, 200, 200)),
    Cell("Titanic form", "get", "/models/titanic/", (302, 200, 200, 200)),
    Cell("admin", "get", "/admin/", (302, 302, 302, 200)),
    Cell("admin documents", "get", "/admin/knowledge/document/", (302, 302, 302, 200)),
    Cell("admin upload", "get", "/admin/knowledge/collection/{collection_id}/upload/", (302, 302, 302, 200)),
    Cell("admin test search", "get", "/admin/knowledge/collection/search/", (302, 302, 302, 200)),
    Cell("admin model versions", "get", "/admin/mlmodels/modelversion/", (302, 302, 302, 200)),
    # --- Resource API (DRF, token) ----------------------------------------------------------------------------
    Cell("collections", "get", "/api/collections/", (401, 200, 200, 200), api=True),
    Cell("restricted collection", "get", "/api/collections/secret/", (401, 200, 404, 200), api=True),
    Cell("create a collection", "post", "/api/collections/", (401, 403, 403, 201), {"name": "New"}, api=True),
    Cell("delete a collection", "delete", "/api/collections/secret/", (401, 403, 403, 204), api=True),
    Cell("document", "get", "/api/documents/{document}/", (401, 200, 404, 200), api=True),
    Cell("document chunks", "get", "/api/documents/{document}/chunks/", (401, 200, 404, 200), api=True),
    Cell(
        "download the original", "get", "/api/documents/{document}/download/", (401, 200, 404, 200), api=True
    ),
    Cell("re-ingest", "post", "/api/documents/{document}/reingest/", (401, 403, 403, 202), api=True),
    Cell("delete a document", "delete", "/api/documents/{document}/", (401, 403, 403, 204), api=True),
    # --- Action API (ninja, token) ----------------------------------------------------------------------------
    Cell("whoami", "get", "/api/whoami", (401, 200, 200, 200), api=True),
    Cell(
        "ask",
        "post",
        "/api/chat/ask",
        (401, 200, 404, 200),
        {"question": "What does the secret page say?", "collections": ["secret"]},
        api=True,
        json=True,
    ),
    Cell("conversations", "get", "/api/chat/conversations", (401, 200, 200, 200), api=True),
    Cell("a conversation", "get", "/api/chat/conversations/{conversation}", (401, 200, 404, 404), api=True),
    Cell(
        "its messages",
        "get",
        "/api/chat/conversations/{conversation}/messages",
        (401, 200, 404, 404),
        api=True,
    ),
    Cell(
        "rename by API",
        "patch",
        "/api/chat/conversations/{conversation}",
        (401, 200, 404, 404),
        {"title": "New"},
        api=True,
        json=True,
    ),
    Cell("delete by API", "delete", "/api/chat/conversations/{conversation}", (401, 204, 404, 404), api=True),
    Cell(
        "feedback by API",
        "post",
        "/api/chat/messages/{answer}/feedback",
        (401, 200, 404, 404),
        {"rating": -1},
        api=True,
        json=True,
    ),
    Cell("OpenAI models", "get", "/api/v1/models", (401, 200, 200, 200), api=True),
    Cell(
        "OpenAI completions on the restricted collection",
        "post",
        "/api/v1/chat/completions",
        (401, 200, 404, 200),
        {"model": "knowledge-base/secret", "messages": [{"role": "user", "content": "What is secret?"}]},
        api=True,
        json=True,
    ),
    Cell("model versions", "get", "/api/ml/models", (401, 200, 200, 200), api=True),
    Cell(
        "Titanic prediction (no active model yet)",
        "post",
        "/api/ml/titanic/predict",
        (401, 503, 503, 503),
        {"pclass": 1, "sex": "female", "age": 30, "sibsp": 0, "parch": 0, "fare": 80, "embarked": "S"},
        api=True,
        json=True,
    ),
]


@pytest.fixture
def world(django_capture_on_commit_callbacks):
    insiders = Group.objects.create(name="insiders")
    member = UserFactory(username="member")
    member.groups.add(insiders)
    outsider = UserFactory(username="outsider")
    staff = UserFactory(username="boss", is_staff=True, is_superuser=True)
    secret = CollectionFactory(
        name="Secret",
        slug="secret",
        visibility=Collection.Visibility.RESTRICTED,
        embedding_model="hashing-384",
    )
    secret.allowed_groups.add(insiders)
    with django_capture_on_commit_callbacks(execute=True):
        added = knowledge_services.document_import(
            collection=secret,
            name="secret.md",
            content=b"# Secret\n\nThe secret page says that the launch code is kept in the vault.",
            index_now=True,
        )
    chunk = Chunk.objects.filter(document=added.document).first()
    assert chunk is not None
    conversation = Conversation.objects.create(owner=member, title="About the secret")
    conversation.collections.add(secret)
    Message.objects.create(conversation=conversation, role="user", text="What does the secret page say?")
    answer = Message.objects.create(
        conversation=conversation, role="assistant", text="The code is in the vault [1].", outcome="answered"
    )
    citation = Citation.objects.create(
        message=answer,
        number=1,
        chunk=chunk,
        document=added.document,
        title="Secret",
        quote=chunk.text,
        start_offset=chunk.start_offset,
        end_offset=chunk.end_offset,
        cited=True,
    )
    return {
        "users": {"anonymous": None, "member": member, "outsider": outsider, "staff": staff},
        "ids": {
            "conversation": conversation.pk,
            "answer": answer.pk,
            "citation": citation.pk,
            "document": added.document.pk,
            "collection_id": secret.pk,
        },
    }


def _fill(value: Any, ids: dict[str, int]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, list):
        return [_fill(item, ids) for item in value]
    if isinstance(value, dict):
        return {key: _fill(item, ids) for key, item in value.items()}
    return value


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("cell", MATRIX, ids=[cell.name for cell in MATRIX])
def test_authorization_matrix(world, cell, role, settings):
    settings.CHAT_RATE_LIMIT = 0
    user = world["users"][role]
    client = Client()
    headers: dict[str, str] = {}
    if user is not None:
        if cell.api:
            headers["Authorization"] = f"Token {Token.objects.create(user=user).key}"
        else:
            client.force_login(user)
    url = cell.url.format(**world["ids"])
    data = _fill(cell.data, world["ids"])
    send = getattr(client, cell.method)
    if cell.json or (cell.method in ("patch", "delete") and data):
        response = send(url, data, content_type="application/json", headers=headers)
    else:
        response = send(url, data, headers=headers) if data else send(url, headers=headers)

    expected = cell.expected[ROLES.index(role)]
    assert response.status_code == expected, (
        f"{cell.name} as {role}: {response.status_code}, expected {expected}"
    )
    if role == "anonymous" and not cell.api:
        assert "/login/" in response["Location"]
    if expected >= 400 and response.get("Content-Type", "").startswith("application/json"):
        body = response.json()
        assert body.get("detail") or body.get("error"), body  # refusals say why
    if role == "outsider" and expected == 200 and "collections" in cell.url:
        assert (
            b"secret" not in response.content
        )  # listed collections leave out what the outsider may not read
    if role == "outsider" and cell.url == "/api/v1/models":
        assert "knowledge-base/secret" not in [model["id"] for model in response.json()["data"]]
    if role == "member" and cell.url == "/api/v1/models":
        assert "knowledge-base/secret" in [model["id"] for model in response.json()["data"]]
