# Django is imported inside the fixtures so that the NumPy core's tests also run without Django (-p no:django).
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _stop_the_embedded_database_this_session_started(request):
    """Without DATABASE_URL the tests run on the embedded PostgreSQL, which the first connection starts and which
    otherwise keeps running after the session; one that ran before the session (`make run`) is left running."""
    pgdata = None
    if request.config.pluginmanager.hasplugin("django"):
        from django.conf import settings

        pgdata = settings.DATABASES["default"].get("PGDATA")
    was_running = bool(pgdata) and (Path(pgdata) / "postmaster.pid").exists()
    yield
    if pgdata and not was_running:
        from config.embedded_db import server

        server.stop(Path(pgdata))


@pytest.fixture(autouse=True)
def _media_in_tmp(request, tmp_path):
    if "settings" in request.fixturenames or _uses_django(request):
        settings = request.getfixturevalue("settings")
        settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _word_statistics_of_this_test(request):
    """Search keeps the chunk table's word statistics and rare-word counts for minutes, per process; each test
    has its own rows, so it starts without another test's."""
    if _uses_django(request):
        from knowledge.search import forget_lexeme_statistics

        forget_lexeme_statistics()


def _uses_django(request) -> bool:
    return request.config.pluginmanager.hasplugin("django") and bool(
        request.node.get_closest_marker("django_db")
        or {"db", "transactional_db", "client"} & set(request.fixturenames)
    )


@pytest.fixture
def staff_user(db):
    from tests.factories import UserFactory

    return UserFactory(username="staff", is_staff=True)


@pytest.fixture
def reader(db):
    from tests.factories import UserFactory

    return UserFactory(username="reader")


@pytest.fixture
def reader_token(reader):
    from rest_framework.authtoken.models import Token

    return Token.objects.create(user=reader).key


@pytest.fixture
def staff_token(staff_user):
    from rest_framework.authtoken.models import Token

    return Token.objects.create(user=staff_user).key


@pytest.fixture
def llm_server(settings):
    """The loopback OpenAI-compatible stand-in, with the settings pointing the real client at it."""
    from chat import llm
    from tests.llm_server import StandIn

    server = StandIn().start()
    settings.OPENAI_BASE_URL = server.base_url
    settings.OPENAI_API_KEY = "test-key"
    settings.CHAT_LLM_MODEL = server.model
    settings.CHAT_LLM_TIMEOUT = 2.0
    settings.CHAT_LLM_MAX_RETRIES = 0
    llm._chat_model.cache_clear()
    yield server
    server.stop()
    llm._chat_model.cache_clear()


# --- A real browser (headless Chromium from the system packages) -------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture
def chromium(monkeypatch):
    """Playwright driving Debian's Chromium. Skips where there is none, unless KB_REQUIRE_BROWSER=1 (CI), where a
    missing browser fails the test instead."""
    import os
    from pathlib import Path

    from django.db import connections

    def missing(reason: str) -> None:
        if os.environ.get("KB_REQUIRE_BROWSER") == "1":
            pytest.fail(f"The browser tests are required here, but {reason}.")
        pytest.skip(reason)

    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - depends on the machine
        missing(f"Playwright is not installed ({exc})")
    if not Path(CHROMIUM).exists():
        missing(f"no Chromium at {CHROMIUM}")
    # Playwright's sync API keeps an event loop in this thread; the test's database work stays synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
        # While Playwright's loop runs, Django keeps this thread's connections apart from the ones opened before;
        # close them here, or the test database could not be dropped at the end.
        connections.close_all()


# Two short pages of the PostgreSQL manual, indexed with the real embedding model, for tests that ask questions.
MANUAL_PAGES = {
    "backup.md": "# Backup and Restore\n\npg_dump makes consistent backups even while the database is being used "
    "concurrently. It does not block other users. Restore a dump with psql or pg_restore.",
    "vacuum.md": "# Routine Vacuuming\n\nVACUUM FULL rewrites the table and returns disk space to the operating "
    "system. Plain VACUUM only makes space reusable within the table.",
}


@pytest.fixture
def manual(django_capture_on_commit_callbacks):
    from knowledge import services
    from knowledge.embeddings import MINILM
    from tests.factories import CollectionFactory

    collection = CollectionFactory(slug="manual", embedding_model=MINILM)
    with django_capture_on_commit_callbacks(execute=True):
        for name, text in MANUAL_PAGES.items():
            services.document_add(collection=collection, name=name, content=text.encode())
    return collection


@pytest.fixture
def api(reader_token):
    """The resource and action APIs as a reader with a token."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {reader_token}")
    return client


@pytest.fixture
def openai_client(live_server, reader_token):
    """The real openai client, pointed at the live test server's OpenAI-compatible API."""
    import openai

    client = openai.OpenAI(
        base_url=f"{live_server.url}/api/v1", api_key=reader_token, max_retries=0, timeout=60
    )
    yield client
    # A kept-alive HTTP connection keeps the live server's request thread, and its database connection, open
    # until the client goes away; left to garbage collection, the test database could not be dropped at the end.
    client.close()
