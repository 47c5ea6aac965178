"""The chat pages in a real browser (headless Chromium): sign in, ask, watch the answer stream in, open a
citation, give feedback. CI sets KB_REQUIRE_BROWSER=1, where a missing browser fails instead of skipping."""

import re

import pytest

from chat.models import Feedback, Message
from knowledge import services as knowledge_services
from knowledge.embeddings import MINILM
from tests.factories import CollectionFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DOCUMENTS = {
    "backup.md": (
        "# Backup and Restore\n\n## SQL dump\n\n"
        "pg_dump makes consistent backups even while the database is being used concurrently. "
        "It does not block other users accessing the database, readers or writers. "
        "Restore a plain dump with psql, or a custom-format archive with pg_restore."
    ),
    "vacuum.md": (
        "# Routine Vacuuming\n\n## Autovacuum\n\n"
        "The autovacuum launcher starts a worker for each database every autovacuum_naptime seconds, "
        "one minute by default.\n\n## Disk space\n\n"
        "VACUUM FULL rewrites the table into a new disk file and returns the unused space to the operating system."
    ),
    "indexes.md": (
        "# Indexes\n\n## B-tree\n\n"
        "B-tree indexes handle equality and range queries on data that can be sorted. "
        "CREATE INDEX CONCURRENTLY builds an index without locking out writes."
    ),
}
# Records the answer's text each time it changes while it is still streaming (before the "done" event).
RECORD_PARTIAL_ANSWERS = """
window.__partials = [];
new MutationObserver(() => {
  const streaming = document.querySelector('article.answer[data-state="streaming"] .answer-body');
  if (streaming && streaming.textContent) window.__partials.push(streaming.textContent);
}).observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
"""


@pytest.fixture
def postgres_manual(transactional_db):
    collection = CollectionFactory(name="PostgreSQL manual", slug="postgres", embedding_model=MINILM)
    for name, text in DOCUMENTS.items():
        knowledge_services.document_import(
            collection=collection, name=name, content=text.encode(), index_now=True
        )
    return collection


def test_a_user_asks_sees_the_answer_stream_opens_a_citation_and_gives_feedback(
    chromium, live_server, postgres_manual, llm_server
):
    llm_server.delay = 0.3
    user = UserFactory(username="ada")
    page = chromium.new_page()
    page.set_default_timeout(60_000)
    page.add_init_script(RECORD_PARTIAL_ANSWERS)

    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("User name").fill("ada")
    page.get_by_label("Password").fill("a-long-test-password")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/")
    page.get_by_label("PostgreSQL manual").check()
    page.get_by_label("Your question").fill("Can I take a backup while people are using the database?")
    page.get_by_label("Your question").press("Enter")
    page.wait_for_selector('article.answer[data-state="done"]')

    partials = page.evaluate("window.__partials")
    final_text = page.inner_text("article.answer .answer-body")
    assert partials, "no text appeared before the answer was done"
    assert len(partials[0]) < len(partials[-1])
    assert "pg_dump" in final_text
    assert re.fullmatch(rf"{live_server.url}/conversations/\d+/", page.url)
    assert page.inner_text("h1") == "Can I take a backup while people are using the database?"
    assert page.locator("article.answer a.cite").count() >= 1
    assert "Backup and Restore" in page.inner_text("article.answer .sources")
    assert f"Answered by {llm_server.model}" in page.inner_text("article.answer .answer-mode")

    page.locator("article.answer a.cite").first.click()
    page.wait_for_url(re.compile(r".*/passages/\d+/$"))
    assert "pg_dump makes consistent backups" in page.inner_text("mark#passage")
    assert page.get_by_role("link", name="Download the original file").is_visible()

    page.go_back()
    page.wait_for_selector('article.answer[data-state="done"]')
    with page.expect_response(re.compile(r".*/feedback/$")):
        page.get_by_role("button", name="Not helpful").click()
    page.get_by_text("Thanks! Saved as not helpful.").wait_for()
    page.get_by_label("Comment").fill("It should mention pg_basebackup.")
    with page.expect_response(re.compile(r".*/feedback/$")):
        page.get_by_role("button", name="Not helpful").click()
    assert page.get_attribute('button[value="-1"]', "aria-pressed") == "true"

    answer = Message.objects.get(role="assistant", conversation__owner=user)
    feedback = Feedback.objects.get(message=answer, user=user)
    assert feedback.rating == -1
    assert feedback.comment == "It should mention pg_basebackup."
