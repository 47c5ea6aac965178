import pytest

from chat import extractive, services
from chat.prompts import Source
from knowledge import services as knowledge_services
from knowledge.embeddings import MINILM, get_embedder
from tests.factories import CollectionFactory

pytestmark = pytest.mark.django_db

BACKUP_AND_RESTORE = {
    "backup.md": (
        "# Backing up\n\n"
        "pg_dump makes consistent backups even while the database is being used concurrently. "
        "It does not block other users reading or writing the database. "
        "The dump is written to standard output or to a file."
    ),
    "restore.md": (
        "# Restoring a dump\n\n"
        "A plain-text dump is restored by feeding it to psql. "
        "Archive formats made with pg_dump -Fc are restored with pg_restore, which can also restore selected "
        "objects only. Create the empty target database before restoring into it."
    ),
}


def source(number, text, title="Page"):
    return Source(number=number, title=title, section=title, page=None, text=text)


def pick(question, sources, **options):
    return extractive.pick_sentences(
        question=question, sources=sources, embedder=get_embedder(MINILM), **options
    )


def test_a_follow_up_is_answered_about_the_new_question_not_the_previous_one(
    django_capture_on_commit_callbacks, reader
):
    collection = CollectionFactory(slug="backups", embedding_model=MINILM)
    with django_capture_on_commit_callbacks(execute=True):
        for name, text in BACKUP_AND_RESTORE.items():
            knowledge_services.document_add(collection=collection, name=name, content=text.encode())
    first = services.question_ask(
        user=reader,
        question="How do I back up a database while it is in use?",
        collection_ids=[collection.pk],
    )

    second = services.question_ask(
        user=reader, question="And how do I restore it?", conversation=first.conversation
    )

    assert "pg_dump makes consistent backups" in first.answer.text.split("\n- ")[1]
    assert second.answer.trace["rewritten_question"].endswith("And how do I restore it?")
    first_quote = second.answer.text.split("\n- ")[1]
    assert "is restored" in first_quote or "are restored" in first_quote
    assert "makes consistent backups" not in second.answer.text


def test_a_sentence_sharing_only_one_common_word_with_the_question_is_not_quoted():
    sources = [
        source(1, "VACUUM FULL returns the unused disk space of a table to the operating system."),
        source(2, "Each table in the database has a row type of the same name."),
    ]

    picked = pick("How do I give disk space of a table back to the operating system?", sources)

    assert [item.source for item in picked] == [1]


def test_nothing_is_quoted_when_no_sentence_answers_the_question():
    sources = [source(1, "VACUUM FULL returns the unused disk space of a table to the operating system.")]

    assert pick("Who won the first football World Cup in 1930?", sources) == []


def test_neighbouring_sentences_that_both_answer_are_quoted_as_one_span():
    sources = [
        source(
            1,
            "Logical replication sends changes to subscribers. "
            "The autovacuum launcher starts a worker for each database every autovacuum_naptime seconds. "
            "The launcher's naptime is one minute by default, so a worker starts about once a minute. "
            "Logical replication slots keep the write-ahead log until subscribers confirm it.",
        )
    ]

    text = extractive.compose(pick("How often does the autovacuum launcher start a worker?", sources))

    bullets = [line for line in text.splitlines() if line.startswith("- ")]
    assert bullets == [
        "- The autovacuum launcher starts a worker for each database every autovacuum_naptime seconds. "
        "The launcher's naptime is one minute by default, so a worker starts about once a minute. [1]"
    ]


def test_code_and_headings_are_never_quoted():
    sources = [
        source(
            1,
            "## Restoring with pg_restore\n\nTo restore an archive into a new database, run:\n\n```\n"
            "pg_restore -d newdb archive.dump\n```\n\npg_restore restores an archive made by pg_dump.",
        )
    ]

    picked = pick("How do I restore an archive made by pg_dump?", sources)

    quoted = " ".join(item.sentence for item in picked)
    assert "pg_restore restores an archive made by pg_dump." in quoted
    assert "```" not in quoted and "##" not in quoted and "-d newdb" not in quoted


def test_only_the_sources_a_sentence_is_quoted_from_are_cited():
    sources = [
        source(
            1,
            "Routine vacuuming keeps tables healthy. Plain VACUUM only makes space reusable within the table.",
        ),
        source(2, "VACUUM FULL returns the unused disk space of a table to the operating system."),
        source(3, "The jsonb type stores JSON documents in a decomposed binary format."),
    ]

    text = extractive.compose(pick("How do I give disk space back to the operating system?", sources))

    assert "[2]" in text and "[3]" not in text
