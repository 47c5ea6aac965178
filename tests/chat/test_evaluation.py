import json

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from chat import evaluation, extractive
from chat.models import Conversation, Message
from knowledge.embeddings import MINILM
from tests.factories import CollectionFactory, UserFactory

pytestmark = pytest.mark.django_db

CORPUS = [
    {
        "_id": "backup",
        "title": "Backup",
        "text": "pg_dump makes consistent backups even while the database is being used concurrently. "
        "It does not block other users reading or writing.",
    },
    {
        "_id": "vacuum",
        "title": "Vacuum",
        "text": "VACUUM FULL rewrites the table into a new disk file and returns the unused space to the "
        "operating system. Plain VACUUM only makes the space reusable within the table.",
    },
    {
        "_id": "replication",
        "title": "Replication",
        "text": "A standby server stays current by replaying the write-ahead log it receives from the primary "
        "over streaming replication. Hot standby lets it answer read-only queries meanwhile.",
    },
]
QUESTIONS = [
    {"_id": "q1", "text": "How can I take a backup while the database is being used?"},
    {"_id": "q2", "text": "How do I return unused disk space to the operating system?"},
    {"_id": "q3", "text": "How does a standby server stay current with the primary?"},
]
OUT_OF_DOMAIN = [
    {"_id": "ood-1", "text": "Who won the first football World Cup in 1930?"},
    {"_id": "ood-2", "text": "How long should I boil an egg for a runny yolk?"},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def tiny_set(tmp_path):
    folder = tmp_path / "tiny"
    (folder / "qrels").mkdir(parents=True)
    write_jsonl(folder / "corpus.jsonl", CORPUS)
    write_jsonl(folder / "queries.jsonl", QUESTIONS)
    judgments = ["query-id\tcorpus-id\tscore", "q1\tbackup\t1", "q2\tvacuum\t1", "q3\treplication\t1"]
    (folder / "qrels" / "test.tsv").write_text("\n".join(judgments) + "\n")
    # The real embedding model: whether an answer is found depends on what the questions mean.
    CollectionFactory(slug="eval-tiny", embedding_model=MINILM, visibility="restricted")
    return folder


@pytest.fixture
def out_of_domain(tmp_path):
    return write_jsonl(tmp_path / "ood.jsonl", OUT_OF_DOMAIN)


def table_row(output, label):
    line = next(line for line in output.splitlines() if line.startswith(label))
    return line[len(label) :].split()


def test_each_answer_cites_the_document_that_answers_it_and_out_of_domain_questions_abstain(
    tiny_set, out_of_domain, tmp_path, capsys
):
    report = tmp_path / "answers.json"

    call_command("evaluate_answers", str(tiny_set), out_of_domain=str(out_of_domain), json=report)

    output = capsys.readouterr().out
    assert (
        "3 documents, 3 judged questions, 2 out-of-domain questions; answers by the extractive answerer"
        in output
    )
    assert "eval-tiny: 3 indexed, 0 updated, 0 unchanged, 0 failed" in output
    assert table_row(output, " ") == ["tiny", "out-of-domain"]
    assert table_row(output, "questions") == ["3", "2"]
    # Each question is answered only by its own document, and each document says nothing about the others.
    assert table_row(output, "cite a judged-relevant document") == ["1.0000"]
    assert table_row(output, "citation precision (micro)") == ["1.0000"]
    assert table_row(output, "citation precision (macro)") == ["1.0000"]
    assert table_row(output, "sentences from judged documents") == ["1.0000"]
    assert table_row(output, "abstained") == ["0.0000", "1.0000"]
    assert "out-of-domain correctly abstained 1.0000; in-domain wrongly refused 0.0000" in output
    assert len(table_row(output, "latency p95 ms")) == 2
    saved = json.loads(report.read_text())["sets"]
    assert saved["tiny"]["per_question"]["q2"]["cited"] == ["vacuum"]
    assert "VACUUM FULL" in saved["tiny"]["per_question"]["q2"]["answer"]
    assert saved["out-of-domain"]["per_question"]["ood-1"]["outcome"] == Message.Outcome.NOT_FOUND


def test_questions_are_asked_as_a_staff_user_and_leave_no_conversation_behind(tiny_set, capsys):
    call_command("evaluate_answers", str(tiny_set), limit_queries=1)
    call_command("evaluate_answers", str(tiny_set), limit_queries=1, reuse=True)

    output = capsys.readouterr().out
    assert "eval-tiny: 0 indexed, 0 updated, 3 unchanged, 0 failed" in output
    user = User.objects.get(username=evaluation.EVALUATION_USERNAME)
    assert user.is_staff and not user.has_usable_password()
    assert User.objects.filter(username=evaluation.EVALUATION_USERNAME).count() == 1
    assert not Conversation.objects.exists()


def test_a_user_of_that_name_who_is_not_staff_is_never_promoted(tiny_set):
    UserFactory(username=evaluation.EVALUATION_USERNAME, is_staff=False)

    with pytest.raises(CommandError, match="not an active staff user"):
        call_command("evaluate_answers", str(tiny_set))

    assert not User.objects.get(username=evaluation.EVALUATION_USERNAME).is_staff


def test_with_an_llm_its_sentences_are_scored_by_the_sources_they_cite(tiny_set, llm_server, capsys):
    call_command("evaluate_answers", str(tiny_set))

    output = capsys.readouterr().out
    assert "answers by the LLM stand-in-model" in output
    # The stand-in quotes the first sentence of source 1, the best-ranked passage: the judged document's.
    assert table_row(output, "cite a judged-relevant document") == ["1.0000"]
    assert table_row(output, "sentences from judged documents") == ["1.0000"]
    assert len([r for r in llm_server.requests if "Sources (numbered" in str(r["body"])]) == 4  # warm-up + 3


def test_sentences_take_the_citation_that_follows_them_in_their_line():
    text = "\n".join(
        [
            extractive.LABEL,
            "",
            "- pg_dump makes backups. It does not block other users. [1]",
            "- VACUUM FULL returns space [2]. Something uncited.",
        ]
    )

    sentences = evaluation.answer_sentences(text, numbers={1, 2})

    assert sentences == [
        ("pg_dump makes backups.", [1]),
        ("It does not block other users. [1]", [1]),
        ("VACUUM FULL returns space [2].", [2]),
        ("Something uncited.", []),
    ]


@pytest.mark.parametrize(
    ("outcome", "text", "cited", "abstained"),
    [
        ("not_found", "The knowledge base does not contain an answer to this question.", False, True),
        ("answered", "The knowledge base does not contain the answer.", False, True),
        ("answered", "The sources do not mention it [1].", True, False),
        ("answered", "pg_dump makes backups [1].", True, False),
        ("failed", "The language model failed.", False, False),
    ],
)
def test_an_answer_abstains_when_nothing_was_found_or_the_model_declines_without_citing(
    outcome, text, cited, abstained
):
    assert evaluation.answer_abstained(outcome=outcome, text=text, cited=cited) is abstained


def test_an_out_of_domain_file_without_text_is_refused(tiny_set, tmp_path):
    broken = write_jsonl(tmp_path / "ood.jsonl", [{"_id": "x"}])

    with pytest.raises(CommandError, match="line 1: an object with an _id and a text"):
        call_command("evaluate_answers", str(tiny_set), out_of_domain=str(broken))
