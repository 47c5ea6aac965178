"""Files only through the checked download, 401 (not a CSRF 403) for anonymous API calls, quotes hidden once
their collection may no longer be read."""

import importlib

import pytest
from django.test import override_settings
from django.urls import clear_url_caches
from rest_framework.test import APIClient

import config.urls
from chat.models import Citation
from knowledge import services as knowledge_services
from knowledge.models import Collection
from tests.factories import CollectionFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("debug", [False, True])
def test_uploaded_files_are_not_served_at_their_storage_address(client, debug):
    collection = CollectionFactory(visibility=Collection.Visibility.RESTRICTED)
    added = knowledge_services.document_add(collection=collection, name="secret.txt", content=b"top secret")

    with override_settings(DEBUG=debug):
        # The URL configuration is read once per process: read it again as a process in this mode would.
        importlib.reload(config.urls)
        clear_url_caches()
        try:
            response = client.get(f"/media/{added.document.file.name}")
            download = client.get(f"/api/documents/{added.document.pk}/download/")
        finally:
            importlib.reload(config.urls)
            clear_url_caches()

    assert response.status_code == 404
    assert b"top secret" not in b"".join(getattr(response, "streaming_content", [response.content]))
    assert download.status_code in (401, 403)


@pytest.mark.parametrize(
    "path", ["/api/chat/ask", "/api/v1/chat/completions", "/api/ml/titanic/predict", "/api/documents/"]
)
def test_anonymous_api_posts_get_401_asking_for_a_token(path):
    response = APIClient(enforce_csrf_checks=True).post(path, {"question": "hi"}, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")
    assert "CSRF" not in response.content.decode()


def test_the_openai_endpoint_answers_401_in_openais_shape():
    response = APIClient().post(
        "/api/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, format="json"
    )

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_quotes_of_a_collection_the_reader_lost_are_hidden_in_old_answers(
    api, reader, django_capture_on_commit_callbacks
):
    from django.contrib.auth.models import Group

    team = Group.objects.create(name="team")
    reader.groups.add(team)
    collection = CollectionFactory(slug="team-docs", visibility=Collection.Visibility.RESTRICTED)
    collection.allowed_groups.add(team)
    with django_capture_on_commit_callbacks(execute=True):
        knowledge_services.document_add(
            collection=collection,
            name="plan.md",
            content=b"# Plan\n\nThe secret launch date of the new product is the fourth of May.",
        )
    asked = api.post(
        "/api/chat/ask", {"question": "What is the secret launch date of the new product?"}, format="json"
    ).json()
    assert "fourth of May" in asked["message"]["text"]

    reader.groups.remove(team)
    seen = api.get(f"/api/chat/conversations/{asked['conversation_id']}").json()["messages"][-1]
    page = APIClient()
    page.force_login(reader)
    html = page.get(f"/conversations/{asked['conversation_id']}/").content.decode()

    assert "fourth of May" not in str(seen)
    assert all(c["quote"] == "" for c in seen["citations"])
    assert "fourth of May" not in html and "can no longer read" in html
    assert Citation.objects.filter(quote__contains="fourth of May").exists()  # kept, only not shown
