"""The pages say what happens: a collection still being indexed, what to try first, a question refused for being
empty or too long (never silently dropped or cut)."""

import pytest
from django.core.management import call_command

from chat.models import Message
from chat.services import MAX_QUESTION_CHARS
from knowledge import services as knowledge_services
from knowledge.models import Document
from tests.factories import CollectionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, reader):
    client.force_login(reader)
    return client


def test_the_home_page_says_a_collection_is_still_being_indexed_with_its_progress(signed_in):
    collection = CollectionFactory(name="Handbook")
    for number in range(3):
        knowledge_services.document_add(
            collection=collection,
            name=f"page-{number}.md",
            content=f"# Page {number}\n\nText.".encode(),
            enqueue=False,
        )
    Document.objects.filter(source_name="page-0.md").update(status=Document.Status.READY)

    page = signed_in.get("/").content.decode()

    assert "Handbook is still being indexed:" in page
    assert "1 of 3 documents ready" in page
    assert '<progress class="indexing-progress" max="3" value="1">' in page


def test_the_demo_offers_example_questions_that_ask_when_clicked(
    signed_in, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_demo", verbosity=0)

    page = signed_in.get("/").content.decode()
    asked = signed_in.post("/ask/", {"question": "How do I back up a database while it is in use?"})

    assert "Try one of these:" in page
    assert 'value="How do I back up a database while it is in use?"' in page
    assert "still being indexed" not in page  # tasks ran in-process: every page is ready
    assert asked.status_code == 302
    assert Message.objects.filter(role=Message.Role.ASSISTANT).exists()


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("   \n\t  ", "The question is empty."),
        (
            "x" * (MAX_QUESTION_CHARS + 1),
            f"{MAX_QUESTION_CHARS + 1:,} characters long; at most {MAX_QUESTION_CHARS:,}",
        ),
    ],
    ids=["whitespace", "too long"],
)
def test_an_empty_or_too_long_question_is_refused_with_the_reason(signed_in, question, message):
    page = signed_in.post("/ask/", {"question": question})
    streamed = signed_in.post("/ask/stream/", {"question": question})

    assert page.status_code == 422 and message in page.content.decode()
    assert streamed.status_code == 422 and message in streamed.json()["detail"]
    assert not Message.objects.exists()


def test_the_question_box_does_not_cut_a_long_paste(signed_in):
    page = signed_in.get("/").content.decode()

    assert 'name="question"' in page
    assert "maxlength" not in page.split('name="question"')[1].split(">")[0]
    assert f'data-max-chars="{MAX_QUESTION_CHARS}"' in page


def test_the_same_document_in_two_searched_collections_is_quoted_once(
    reader, django_capture_on_commit_callbacks
):
    from chat import services as chat_services
    from knowledge.embeddings import MINILM

    text = (
        b"# Backup and Restore\n\npg_dump makes consistent backups even while the database is being used "
        b"concurrently. It does not block other users. Restore a dump with psql or pg_restore."
    )
    with django_capture_on_commit_callbacks(execute=True):
        for slug in ("team-a", "team-b"):
            collection = CollectionFactory(slug=slug, embedding_model=MINILM)
            knowledge_services.document_add(collection=collection, name="backup.md", content=text)

    asked = chat_services.question_ask(user=reader, question="Can I back up while the database is in use?")

    bullets = [line for line in asked.answer.text.splitlines() if line.startswith("- ")]
    sentences = [line.rsplit(" [", 1)[0] for line in bullets]
    assert bullets and len(sentences) == len(set(sentences))
    assert asked.answer.citations.count() == 1  # one source stands for both copies
