"""The frozen R manuals question set is well formed; checked without the PDFs, the database or a model."""

import csv
import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT / "benchmarks" / "data" / "rmanuals-questions"
BUILDER = ROOT / "scripts" / "build_rmanuals_corpus.py"
MANUALS = ("R-intro", "R-admin", "R-exts", "R-lang", "R-data", "R-ints")
CORPUS_ID = re.compile(r"(?P<manual>R-[a-z]+)#page=(?P<page>[1-9][0-9]*)")


@pytest.fixture(scope="module")
def queries():
    with (DATASET / "queries.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="module")
def qrels():
    with (DATASET / "qrels" / "test.tsv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        assert reader.fieldnames == ["query-id", "corpus-id", "score"]
        return list(reader)


def test_there_are_at_least_forty_queries_with_unique_ids(queries):
    ids = [query["_id"] for query in queries]

    assert len(ids) >= 40
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"rq-\d{3}", query_id) for query_id in ids)


def test_every_query_is_a_question_of_at_least_four_words(queries):
    not_questions = [
        query["_id"]
        for query in queries
        if len(query["text"].split()) < 4 or not query["text"][0].isupper() or not query["text"].endswith("?")
    ]

    assert not_questions == []


def test_every_query_has_a_page_judged_to_answer_it(queries, qrels):
    best_grade: dict[str, int] = {}
    for row in qrels:
        best_grade[row["query-id"]] = max(best_grade.get(row["query-id"], 0), int(row["score"]))

    assert {query["_id"]: best_grade.get(query["_id"]) for query in queries} == {
        query["_id"]: 2 for query in queries
    }
    assert set(best_grade) <= {query["_id"] for query in queries}


def test_judgments_name_a_page_of_one_of_the_six_manuals_with_grade_one_or_two(qrels):
    malformed = [
        row
        for row in qrels
        if not (match := CORPUS_ID.fullmatch(row["corpus-id"]))
        or match["manual"] not in MANUALS
        or row["score"] not in {"1", "2"}
    ]

    assert malformed == []


def test_no_page_is_judged_twice_for_the_same_query(qrels):
    pairs = Counter((row["query-id"], row["corpus-id"]) for row in qrels)

    assert [pair for pair, count in pairs.items() if count > 1] == []


def test_each_manual_answers_at_least_four_queries(qrels):
    answered = {(row["corpus-id"].split("#", 1)[0], row["query-id"]) for row in qrels if row["score"] == "2"}
    queries_per_manual = Counter(manual for manual, _ in answered)

    assert {manual: queries_per_manual[manual] for manual in MANUALS if queries_per_manual[manual] < 4} == {}


def test_every_query_has_a_source_row_for_the_reviewer(queries):
    with (DATASET / "sources.tsv").open(encoding="utf-8", newline="") as handle:
        sources = list(csv.DictReader(handle, delimiter="\t"))

    assert [row["query-id"] for row in sources] == [query["_id"] for query in queries]
    assert all(row["faq-entry"] and row["sections-judged"] for row in sources)


@pytest.fixture(scope="module")
def builder():
    spec = importlib.util.spec_from_file_location("build_rmanuals_corpus", BUILDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_corpus_builder_writes_exactly_the_judged_manuals(builder):
    assert tuple(builder.MANUALS) == MANUALS


def test_the_corpus_names_each_pdf_by_absolute_path_and_refuses_a_missing_manual(builder, tmp_path):
    for manual in MANUALS[1:]:
        (tmp_path / f"{manual}.pdf").write_bytes(b"%PDF-1.5\n")
    (tmp_path / "R-intro.pdf").write_text("not a pdf")

    rows, unusable = builder.corpus_rows(tmp_path)
    status = builder.main(["--source", str(tmp_path), "--out", str(tmp_path / "out")])

    assert [row["_id"] for row in rows] == list(MANUALS[1:])
    assert rows[0] == {
        "_id": "R-admin",
        "title": "R Installation and Administration",
        "file": str(tmp_path / "R-admin.pdf"),
    }
    assert unusable == [tmp_path / "R-intro.pdf"]
    assert status == 2
    assert not (tmp_path / "out" / "corpus.jsonl").exists()
