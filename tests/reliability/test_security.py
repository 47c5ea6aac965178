"""Files only through the checked download, 401 (not a CSRF 403) for anonymous API calls, quotes hidden once
their collection may no longer be read."""

import importlib
import re

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
    team, _, asked = _team_reader_with_an_answer(api, reader, django_capture_on_commit_callbacks)
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


PAGES_TO_CHECK = ["/", "/models/", "/models/digits/", "/models/titanic/", "/accounts/login/"]


@pytest.mark.parametrize("path", PAGES_TO_CHECK)
def test_pages_carry_a_strict_content_security_policy_and_need_nothing_inline(client, reader, path):
    client.force_login(reader)

    response = client.get(path, follow=True)

    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    html = response.content.decode()
    assert "script-src 'self';" in policy and "style-src 'self';" in policy
    assert "unsafe-inline" not in policy
    assert re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)", html) is None  # no inline script
    assert "<style" not in html and " style=" not in html and not re.search(r"\son[a-z]+=", html)


def test_admin_pages_allow_inline_styles_but_never_inline_scripts(client, staff_user):
    client.force_login(staff_user)

    policy = client.get("/admin/")["Content-Security-Policy"]

    assert "style-src 'self' 'unsafe-inline'" in policy and "script-src 'self';" in policy


@pytest.mark.parametrize("debug", [False, True])
def test_a_missing_page_is_the_sites_own_page_in_every_mode(client, reader, settings, debug):
    settings.DEBUG = debug
    client.force_login(reader)

    missing = client.get("/no-such-page/")
    other_users = client.get("/conversations/999999/")

    for response in (missing, other_users):
        assert response.status_code == 404
        html = response.content.decode()
        assert "Not found" in html and "Back to your conversations" in html
        assert "DEBUG = True" not in html and "URLconf" not in html


def test_a_crash_is_the_sites_own_page_even_under_debug(client, reader, settings, monkeypatch):
    from chat import views

    settings.DEBUG = True
    client.raise_request_exception = False
    client.force_login(reader)

    def crash(request):
        raise RuntimeError("a secret detail of the crash")

    monkeypatch.setattr(views.selectors, "conversation_overview", lambda **kwargs: crash(None))
    response = client.get("/")

    assert response.status_code == 500
    assert "Something went wrong" in response.content.decode()
    assert "a secret detail" not in response.content.decode()


def test_browsers_find_the_favicon(client):
    response = client.get("/favicon.ico", follow=True)

    assert response.status_code == 200
    assert (
        b"<svg" in b"".join(response.streaming_content) if response.streaming else b"<svg" in response.content
    )


def _team_reader_with_an_answer(api, reader, django_capture_on_commit_callbacks):
    from django.contrib.auth.models import Group

    team = Group.objects.create(name="team")
    reader.groups.add(team)
    collection = CollectionFactory(slug="team-docs", visibility=Collection.Visibility.RESTRICTED)
    collection.allowed_groups.add(team)
    with django_capture_on_commit_callbacks(execute=True):
        added = knowledge_services.document_add(
            collection=collection,
            name="plan.md",
            content=b"# Plan\n\nThe secret launch date of the new product is the fourth of May.",
        )
    asked = api.post(
        "/api/chat/ask", {"question": "What is the secret launch date of the new product?"}, format="json"
    ).json()
    return team, added.document, asked


def test_a_follow_up_does_not_send_a_withheld_answer_to_the_language_model(
    api, reader, django_capture_on_commit_callbacks, llm_server
):
    team, _, asked = _team_reader_with_an_answer(api, reader, django_capture_on_commit_callbacks)
    reader.groups.remove(team)
    before = len(llm_server.requests)

    api.post(
        "/api/chat/ask",
        {"question": "And what about it?", "conversation_id": asked["conversation_id"]},
        format="json",
    )

    sent = " ".join(str(request["body"]) for request in llm_server.requests[before:])
    assert sent and "fourth of May" not in sent


def test_a_deleted_document_does_not_hide_the_answers_that_quoted_it(
    api, reader, django_capture_on_commit_callbacks
):
    _, document, asked = _team_reader_with_an_answer(api, reader, django_capture_on_commit_callbacks)

    knowledge_services.document_delete(document=document)
    seen = api.get(f"/api/chat/conversations/{asked['conversation_id']}").json()["messages"][-1]

    assert "fourth of May" in seen["text"]


@pytest.mark.parametrize("debug", [False, True])
def test_a_bad_host_gets_the_sites_page_or_json_never_the_technical_page(client, settings, debug):
    settings.DEBUG = debug

    page = client.get("/", HTTP_HOST="evil.example")
    api = client.get("/api/whoami", HTTP_HOST="evil.example")
    openai_404 = client.get("/api/v1/no-such-thing")

    assert (
        page.status_code == 400 and b"NONE,NOARCHIVE" not in page.content and b"Traceback" not in page.content
    )
    assert api.status_code == 400 and api.json()["code"] == "BadRequest"
    assert openai_404.status_code == 404 and openai_404.json()["error"]["type"] == "not_found_error"
