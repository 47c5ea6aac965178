import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from core.errors import InvalidInput
from knowledge import baseline, evaluation
from knowledge.embeddings import HashingEmbedder
from knowledge.models import Collection, Document
from knowledge.search import SearchParams
from tests.documents import pdf_bytes

pytestmark = pytest.mark.django_db

BUILDER = Path(__file__).resolve().parents[2] / "scripts" / "build_pgdocs_beir.py"


def write_beir(folder, *, corpus=None, queries=(), qrels=()):
    (folder / "qrels").mkdir(parents=True)
    if corpus is not None:
        (folder / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in queries))
    lines = ["query-id\tcorpus-id\tscore"] + ["\t".join(map(str, row)) for row in qrels]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return folder


# --- Metrics -------------------------------------------------------------------------------------------------------


def test_ndcg_discounts_a_relevant_document_by_its_rank():
    relevance = {"a": 1, "b": 1}

    score = evaluation.ndcg_at_k(ranking=["a", "x", "b"], relevance=relevance, k=10)

    # DCG = 1/log2(2) + 1/log2(4) = 1.5; ideal DCG = 1/log2(2) + 1/log2(3)
    assert score == pytest.approx(1.5 / (1 + 1 / math.log2(3)))


def test_ndcg_uses_graded_relevance_for_the_ideal_order():
    relevance = {"a": 2, "b": 1}

    score = evaluation.ndcg_at_k(ranking=["b", "a"], relevance=relevance, k=10)

    assert score == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))


def test_ndcg_ignores_documents_below_the_cutoff():
    ranking = [f"x{index}" for index in range(10)] + ["a"]

    score = evaluation.ndcg_at_k(ranking=ranking, relevance={"a": 1}, k=10)

    assert score == 0.0


def test_ndcg_is_one_for_the_ideal_ranking():
    score = evaluation.ndcg_at_k(ranking=["a", "b", "x"], relevance={"a": 1, "b": 1}, k=10)

    assert score == pytest.approx(1.0)


def test_recall_counts_the_share_of_relevant_documents_within_k():
    relevance = {"a": 1, "b": 1, "c": 1}

    at_two = evaluation.recall_at_k(ranking=["a", "x", "c"], relevance=relevance, k=2)
    at_three = evaluation.recall_at_k(ranking=["a", "x", "c"], relevance=relevance, k=3)

    assert at_two == pytest.approx(1 / 3)
    assert at_three == pytest.approx(2 / 3)


def test_recall_does_not_count_documents_judged_not_relevant():
    score = evaluation.recall_at_k(ranking=["a", "b"], relevance={"a": 1, "b": 0, "c": 1}, k=10)

    assert score == pytest.approx(0.5)


def test_mrr_is_the_reciprocal_rank_of_the_first_relevant_document():
    first_at_three = evaluation.mrr_at_k(ranking=["x", "y", "a", "b"], relevance={"a": 1, "b": 1}, k=10)
    beyond_k = evaluation.mrr_at_k(ranking=["x", "y", "a"], relevance={"a": 1}, k=2)

    assert first_at_three == pytest.approx(1 / 3)
    assert beyond_k == 0.0


def test_chunks_collapse_to_documents_at_the_rank_of_their_best_chunk():
    chunk_documents = ["guide", "faq", "guide", "api", "faq"]

    ranking = evaluation.documents_by_best_chunk(chunk_documents)

    assert ranking == ["guide", "faq", "api"]


def test_percentile_interpolates_between_values():
    values = [10.0, 20.0, 30.0, 40.0]

    assert evaluation.percentile(values, 50) == pytest.approx(25.0)
    assert evaluation.percentile(values, 95) == pytest.approx(38.5)


def test_fewer_candidates_than_the_depth_cut_the_ranking_to_that_many_chunks():
    assert evaluation.depth(SearchParams(candidates=50)) == 50
    assert evaluation.depth(SearchParams(candidates=500)) == evaluation.CHUNK_DEPTH
    assert evaluation.depth(SearchParams()) == evaluation.CHUNK_DEPTH


# --- Reading a data set ----------------------------------------------------------------------------------------------


def test_reader_keeps_only_queries_with_a_relevant_document_in_the_corpus(tmp_path):
    folder = write_beir(
        tmp_path / "set",
        corpus=[
            {"_id": "d1", "title": "One", "text": "first"},
            {"_id": "d2", "title": "Two", "text": "second"},
        ],
        queries=[
            {"_id": "q1", "text": "first?"},
            {"_id": "q2", "text": "judged only on a missing page"},
            {"_id": "q3", "text": "judged not relevant"},
            {"_id": "q4", "text": "not judged"},
        ],
        qrels=[("q1", "d1", 1), ("q1", "d2", 0), ("q2", "gone", 1), ("q3", "d2", 0)],
    )

    dataset = evaluation.dataset_read(folder=folder)

    assert dataset.queries == {"q1": "first?"}
    assert dataset.qrels == {"q1": {"d1": 1, "d2": 0}}
    assert dataset.missing_judged_documents == 1
    assert dataset.corpus["d2"] == evaluation.CorpusEntry(doc_id="d2", title="Two", text="second")


def test_reader_takes_the_corpus_from_another_folder(tmp_path):
    corpus_folder = write_beir(tmp_path / "corpus", corpus=[{"_id": "d1", "title": "One", "text": "first"}])
    questions = write_beir(
        tmp_path / "questions", queries=[{"_id": "q1", "text": "first?"}], qrels=[("q1", "d1", 1)]
    )

    dataset = evaluation.dataset_read(folder=questions, corpus_folder=corpus_folder)

    assert list(dataset.corpus) == ["d1"]
    assert dataset.qrels == {"q1": {"d1": 1}}


def test_reader_names_the_file_and_line_of_a_malformed_row(tmp_path):
    folder = write_beir(tmp_path / "set", corpus=[{"_id": "d1", "text": "x"}])
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "fine"}\nnot json\n')

    with pytest.raises(evaluation.DatasetError, match=r"queries.jsonl, line 2: not JSON"):
        evaluation.dataset_read(folder=folder)


def test_a_corpus_entry_without_a_heading_gets_its_title_as_one():
    plain = evaluation.CorpusEntry(doc_id="d1", title="Backups", text="Use pg_dump.")
    headed = evaluation.CorpusEntry(doc_id="d2", title="Backups", text="# Backups\n\nUse pg_dump.")

    assert evaluation.corpus_markdown(plain) == "# Backups\n\nUse pg_dump."
    assert evaluation.corpus_markdown(headed) == "# Backups\n\nUse pg_dump."


# --- The command, end to end ------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_set(tmp_path):
    return write_beir(
        tmp_path / "tiny",
        corpus=[
            {
                "_id": "vacuum.html",
                "title": "Vacuum",
                "text": "# Vacuum\n\nVACUUM reclaims storage of dead tuples.",
            },
            {
                "_id": "backup.html",
                "title": "Backup",
                "text": "pg_dump writes a consistent snapshot to a file.",
            },
            {
                "_id": "json.html",
                "title": "JSON",
                "text": "The jsonb type stores documents in a binary format.",
            },
        ],
        queries=[
            {"_id": "q1", "text": "reclaim storage of dead tuples"},
            {"_id": "q2", "text": "consistent snapshot with pg_dump"},
            {"_id": "q3", "text": "jsonb binary format"},
        ],
        qrels=[("q1", "vacuum.html", 1), ("q2", "backup.html", 1), ("q3", "json.html", 1)],
    )


def table_row(output, label):
    line = next(line for line in output.splitlines() if line.startswith(label))
    return line[len(label) :].split()


def test_command_indexes_the_corpus_and_prints_each_metric_per_mode(tiny_set, tmp_path, capsys):
    report = tmp_path / "report.json"

    call_command("evaluate_retrieval", str(tiny_set), modes="lexical,dense,hybrid,hybrid+rerank", json=report)

    output = capsys.readouterr().out
    assert "3 documents, 3 judged queries" in output
    assert "eval-tiny: 3 indexed, 0 updated, 0 unchanged, 0 failed" in output
    assert "hybrid+rerank: not available, no reranker is configured" in output
    assert table_row(output, " ") == ["lexical", "dense", "hybrid"]
    assert table_row(output, "ndcg@10")[0] == "1.0000"
    assert table_row(output, "mrr@10")[0] == "1.0000"
    assert len(table_row(output, "latency p95 ms")) == 3
    saved = json.loads(report.read_text())
    assert set(saved["modes"]) == {"lexical", "dense", "hybrid"}
    assert set(saved["modes"]["hybrid"]["per_query"]) == {"q1", "q2", "q3"}
    assert all(0 <= value <= 1 for run in saved["modes"].values() for value in run["means"].values())
    assert Document.objects.filter(collection__slug="eval-tiny", status=Document.Status.READY).count() == 3


def test_command_with_reuse_keeps_the_indexed_documents(tiny_set, capsys):
    call_command("evaluate_retrieval", str(tiny_set), modes="lexical")
    first_ids = set(Document.objects.values_list("pk", flat=True))
    capsys.readouterr()

    call_command("evaluate_retrieval", str(tiny_set), modes="lexical", reuse=True, limit_queries=2)

    output = capsys.readouterr().out
    assert "3 documents, 2 judged queries" in output
    assert "eval-tiny: 0 indexed, 0 updated, 3 unchanged, 0 failed" in output
    assert set(Document.objects.values_list("pk", flat=True)) == first_ids


def test_command_without_reuse_indexes_the_scratch_collection_afresh(tiny_set, capsys):
    call_command("evaluate_retrieval", str(tiny_set), modes="lexical")
    first_ids = set(Document.objects.values_list("pk", flat=True))
    capsys.readouterr()

    call_command("evaluate_retrieval", str(tiny_set), modes="lexical")

    assert "3 indexed, 0 updated, 0 unchanged, 0 failed (emptied first: 3 documents removed)" in (
        capsys.readouterr().out
    )
    assert not first_ids & set(Document.objects.values_list("pk", flat=True))


def test_command_reads_queries_from_one_folder_and_the_corpus_from_another(tiny_set, tmp_path, capsys):
    questions = write_beir(
        tmp_path / "questions",
        queries=[{"_id": "n1", "text": "How do I free the space that dead rows take?"}],
        qrels=[("n1", "vacuum.html", 1)],
    )

    call_command("evaluate_retrieval", str(questions), corpus_from=str(tiny_set), modes="lexical")

    output = capsys.readouterr().out
    assert "3 documents, 1 judged queries" in output
    assert "eval-tiny: 3 indexed" in output


def test_corpus_import_refuses_a_collection_that_is_not_a_scratch_one(tiny_set):
    dataset = evaluation.dataset_read(folder=tiny_set)

    with pytest.raises(InvalidInput, match="must start with 'eval-'"):
        evaluation.corpus_import(dataset=dataset, slug="handbook", reuse=False)

    assert not Collection.objects.filter(slug="handbook").exists()


def test_command_rejects_an_unknown_mode(tiny_set):
    with pytest.raises(CommandError, match="Unknown mode"):
        call_command("evaluate_retrieval", str(tiny_set), modes="lexical,sparse")


def test_command_prints_the_baseline_beside_the_product_and_the_difference_from_its_best(
    tiny_set, tmp_path, capsys, settings
):
    settings.DATA_DIR = tmp_path / "data"
    report = tmp_path / "report.json"

    call_command("evaluate_retrieval", str(tiny_set), json=report)

    output = capsys.readouterr().out
    assert "baseline: 3 documents, 3 windows of 180 words overlapping by 40" in output
    assert table_row(output, " ") == [
        "lexical",
        "dense",
        "hybrid",
        "baseline-bm25",
        "baseline-dense",
        "baseline-rrf",
    ]
    saved = json.loads(report.read_text())
    means = {mode: run["means"] for mode, run in saved["modes"].items()}
    # BM25 finds each document by its distinctive words.
    assert means["baseline-bm25"]["ndcg@10"] == 1.0
    best = {
        metric: max(means[mode][metric] for mode in baseline.BASELINE_MODES) for metric in evaluation.METRICS
    }
    for mode in ("lexical", "dense", "hybrid"):
        for metric in evaluation.METRICS:
            assert saved["minus_best_baseline"][mode][metric] == pytest.approx(
                means[mode][metric] - best[metric]
            )
    assert table_row(output, "  ndcg@10") == [
        f"{saved['minus_best_baseline'][m]['ndcg@10']:+.4f}" for m in ("lexical", "dense", "hybrid")
    ]
    assert len(list((tmp_path / "data" / "eval-cache").glob("baseline-*.npy"))) == 1


def test_baseline_modes_alone_index_nothing(tiny_set, capsys, settings, tmp_path):
    settings.DATA_DIR = tmp_path / "data"

    call_command("evaluate_retrieval", str(tiny_set), modes="baseline-dense,baseline-rrf")

    assert table_row(capsys.readouterr().out, " ") == ["baseline-dense", "baseline-rrf"]
    assert not Collection.objects.filter(slug="eval-tiny").exists()


def test_baseline_window_vectors_are_read_back_from_the_cache(tmp_path, monkeypatch):
    documents = {"a": ("Alpha", "one two three"), "b": ("Beta", "four five six")}
    first = baseline.baseline_build(documents=documents, embedder=HashingEmbedder(), cache_dir=tmp_path)
    calls = []
    embedder = HashingEmbedder()
    original = embedder.embed_documents
    monkeypatch.setattr(
        embedder, "embed_documents", lambda texts, **kw: calls.append(texts) or original(texts)
    )

    again = baseline.baseline_build(documents=documents, embedder=embedder, cache_dir=tmp_path)
    changed = baseline.baseline_build(
        documents={**documents, "b": ("Beta", "four five seven")}, embedder=embedder, cache_dir=tmp_path
    )

    assert (again.vectors == first.vectors).all()
    assert calls == [["Alpha. one two three", "Beta. four five seven"]]  # only the changed corpus is embedded
    assert len(changed.documents) == 2


def test_baseline_windows_are_180_words_overlapping_by_40_with_the_title_in_front():
    words = [f"w{number}" for number in range(400)]

    windows = baseline.windows(" ".join(words), title="Guide")

    assert [window.split()[1] for window in windows] == ["w0", "w140", "w280"]
    assert all(window.startswith("Guide. ") for window in windows)
    assert [len(window.split()) - 1 for window in windows] == [180, 180, 120]
    assert windows[-1].endswith("w399")
    assert baseline.windows("just a few words", title="T") == ["T. just a few words"]


def test_bm25_scores_as_okapi_with_k1_1_5_and_b_0_75():
    texts = ["apple apple pear", "pear plum", "plum plum plum kiwi"]
    index = baseline.BM25(texts)

    scores = index.scores("Apple, plum!")

    average = (3 + 2 + 4) / 3

    def term(tf, length, n):
        idf = math.log(1 + (3 - n + 0.5) / (n + 0.5))
        return idf * tf * 2.5 / (tf + 1.5 * (0.25 + 0.75 * length / average))

    assert scores == pytest.approx([term(2, 3, 1), term(1, 2, 2), term(3, 4, 2)])


def test_baseline_ranks_a_document_by_its_best_window_and_fuses_by_rrf():
    texts = {
        "long": ("Manual", " ".join(["filler"] * 400 + ["checkpoint", "tuning", "guide"])),
        "short": ("Notes", "checkpoint once"),
        "other": ("Other", "nothing relevant here"),
    }
    built = baseline.baseline_build(documents=texts, embedder=HashingEmbedder(), cache_dir=None)

    assert built.rank("baseline-bm25", "checkpoint tuning guide")[:2] == ["long", "short"]
    assert "other" not in built.rank("baseline-bm25", "checkpoint tuning guide")  # no window shares a word
    assert sorted(built.rank("baseline-dense", "checkpoint")) == ["long", "other", "short"]
    assert built.rank("baseline-rrf", "checkpoint tuning guide")[0] == "long"


def test_a_pdf_corpus_judged_by_page_is_indexed_from_its_file_and_scored_per_page(tmp_path, capsys, settings):
    settings.DATA_DIR = tmp_path / "data"
    folder = tmp_path / "manuals"
    folder.mkdir()
    (folder / "admin.pdf").write_bytes(
        pdf_bytes(
            [
                "Installing from sources needs a C compiler and the make program.",
                "Memory limits are set with the environment variable R_MAX_VSIZE for the vector heap.",
                "Recommended packages are installed with the base system by default.",
            ],
            outline=[(0, 1, "Installation"), (1, 1, "Memory"), (2, 1, "Packages")],
        )
    )
    write_beir(
        folder,
        corpus=[{"_id": "admin", "title": "Administration", "file": "admin.pdf"}],
        queries=[
            {"_id": "q1", "text": "How do I limit the vector heap memory?"},
            {"_id": "q2", "text": "What do I need to compile from sources?"},
        ],
        qrels=[("q1", "admin#page=2", 2), ("q2", "admin#page=1", 1), ("q2", "missing#page=1", 1)],
    )
    report = tmp_path / "report.json"

    call_command("evaluate_retrieval", str(folder), modes="lexical,baseline-bm25", json=report)

    output = capsys.readouterr().out
    assert "1 documents, 2 judged queries (1 judgments of documents not in the corpus dropped)" in output
    assert "eval-manuals: 1 indexed" in output
    assert "baseline: 3 documents, 3 windows" in output  # one per page
    document = Document.objects.get(collection__slug="eval-manuals")
    assert document.status == Document.Status.READY and document.page_count == 3
    saved = json.loads(report.read_text())
    assert saved["modes"]["lexical"]["per_query"]["q1"]["mrr@10"] == 1.0
    assert saved["modes"]["baseline-bm25"]["per_query"]["q1"]["mrr@10"] == 1.0
    assert saved["modes"]["lexical"]["per_query"]["q2"]["mrr@10"] == 1.0


def test_judged_id_names_the_page_only_for_sets_judged_by_page():
    collection = Collection(slug="eval-x")
    by_document = evaluation.CorpusImported(collection=collection, doc_ids={7: "guide.html"})
    by_page = evaluation.CorpusImported(collection=collection, doc_ids={7: "R-admin"}, by_page=True)

    assert by_document.judged_id(7, 3) == "guide.html"
    assert by_page.judged_id(7, 3) == "R-admin#page=3"
    assert by_page.judged_id(8, 1) == "document:8#page=1"


def test_a_file_corpus_row_that_cannot_be_read_is_a_dataset_error(tmp_path):
    entry = evaluation.CorpusEntry(doc_id="gone", title="", text="", file=tmp_path / "gone.pdf")

    with pytest.raises(evaluation.DatasetError, match="gone: cannot read"):
        entry.read()


# --- The builder of the PostgreSQL manual set ----------------------------------------------------------------------

PAGE = """<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE html><html xmlns="http://www.w3.org/1999/xhtml"><head>
<title>{title}</title></head><body><div class="navheader"><a href="index.html">Prev</a> Navigation words</div>
<div class="sect1"><h2 class="title">{title}</h2>{body}</div><div class="navfooter">Home Up Next</div></body></html>"""

BOOKINDEX = """<html><head><title>Index</title></head><body><div class="index"><div class="indexdiv"><h3>C</h3><dl>
<dt id="e1">CASCADE, <a class="indexterm" href="ddl-depend.html#X">Dependency Tracking</a></dt>
<dd><dl><dt>with DROP, <a class="indexterm" href="ddl-depend.html">Dependency Tracking</a>,
 <a class="indexterm" href="sql-drop.html#Y">DROP</a></dt><dt>(see also <a href="#e9">drop</a>)</dt></dl></dd>
<dt id="e2">case sensitivity</dt><dd><dl><dt>of SQL commands, <a class="indexterm" href="sql-drop.html">DROP</a></dt>
</dl></dd>
<dt id="e3">cascade, <a class="indexterm" href="sql-drop.html">DROP</a></dt>
<dt id="e4">chapters, <a class="indexterm" href="chapter.html">Chapter</a></dt>
<dt id="e5">cluster (see <a href="#e6">database cluster</a>)</dt>
<dt id="e7">::, <a class="indexterm" href="sql-drop.html">DROP</a></dt>
</dl></div></div></body></html>"""


@pytest.fixture
def manual(tmp_path):
    source = tmp_path / "html"
    source.mkdir()
    words = "Dropping an object that others depend on fails unless CASCADE is given. " * 5
    (source / "ddl-depend.html").write_text(
        PAGE.format(
            title="5.14. Dependency Tracking",
            body=f"<p>{words}</p><h3>Details</h3><pre># not a heading\n"
            'DROP TABLE t CASCADE;</pre><div class="note"><h3>Note</h3><p>Be careful.</p></div>',
        )
    )
    (source / "sql-drop.html").write_text(PAGE.format(title="DROP", body="<p>DROP removes an object.</p>"))
    (source / "chapter.html").write_text(
        PAGE.format(
            title="Chapter 5. Data Definition",
            body='<p>This chapter covers it.</p><div class="toc">'
            '<dl><dt><a href="ddl-depend.html">5.14. Dependency Tracking</a></dt></dl></div>',
        )
    )
    (source / "bookindex.html").write_text(BOOKINDEX)
    return source


@pytest.fixture
def builder(monkeypatch):
    # scripts/ is not a package; the module is registered so that its dataclasses can resolve their annotations.
    spec = importlib.util.spec_from_file_location("build_pgdocs_beir", BUILDER)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_builder_writes_pages_as_markdown_and_index_terms_as_judged_queries(
    builder, manual, tmp_path, capsys
):
    out = tmp_path / "beir"

    code = builder.main(["--source", str(manual), "--out", str(out)])

    assert code == 0
    corpus = {row["_id"]: row for row in map(json.loads, (out / "corpus.jsonl").read_text().splitlines())}
    assert set(corpus) == {"ddl-depend.html", "sql-drop.html"}
    page = corpus["ddl-depend.html"]
    assert page["title"] == "5.14. Dependency Tracking"
    assert page["text"].startswith("# 5.14. Dependency Tracking\n\nDropping an object")
    assert "### Details" in page["text"]
    assert "```\n# not a heading\nDROP TABLE t CASCADE;\n```" in page["text"]
    assert "Note: Be careful." in page["text"]
    assert "Navigation" not in page["text"] and "Home Up Next" not in page["text"]
    queries = {
        row["text"]: row["_id"] for row in map(json.loads, (out / "queries.jsonl").read_text().splitlines())
    }
    assert set(queries) == {"CASCADE", "CASCADE with DROP", "case sensitivity of SQL commands"}
    qrels = (out / "qrels" / "test.tsv").read_text().splitlines()
    assert qrels[0] == "query-id\tcorpus-id\tscore"
    judged = {(line.split("\t")[0], line.split("\t")[1]) for line in qrels[1:]}
    assert judged == {
        (queries["CASCADE"], "ddl-depend.html"),
        (queries["CASCADE"], "sql-drop.html"),
        (queries["CASCADE with DROP"], "ddl-depend.html"),
        (queries["CASCADE with DROP"], "sql-drop.html"),
        (queries["case sensitivity of SQL commands"], "sql-drop.html"),
    }
    printed = capsys.readouterr().out
    assert "corpus: 2 pages (2 left out" in printed
    assert "1 of symbols only" in printed and "1 whose pages are all left out" in printed


def test_builder_samples_the_same_queries_for_the_same_seed(builder, manual, tmp_path):
    builder.main(["--source", str(manual), "--out", str(tmp_path / "a"), "--max-queries", "2", "--seed", "7"])
    builder.main(["--source", str(manual), "--out", str(tmp_path / "b"), "--max-queries", "2", "--seed", "7"])

    first = (tmp_path / "a" / "queries.jsonl").read_text()
    assert first == (tmp_path / "b" / "queries.jsonl").read_text()
    assert len(first.splitlines()) == 2
    assert (tmp_path / "a" / "qrels" / "test.tsv").read_text() == (
        tmp_path / "b" / "qrels" / "test.tsv"
    ).read_text()


def test_builder_with_raw_html_names_every_page_but_the_index_as_a_file(builder, manual, tmp_path):
    out = tmp_path / "raw"

    assert builder.main(["--source", str(manual), "--out", str(out), "--raw-html"]) == 0

    rows = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
    assert rows == [
        {"_id": path.name, "file": str(path)}
        for path in sorted(manual.glob("*.html"))
        if path.name != "bookindex.html"
    ]
    assert {"chapter.html", "ddl-depend.html"} <= {row["_id"] for row in rows}  # title pages too
    dataset = evaluation.dataset_read(folder=out)
    assert dataset.corpus["sql-drop.html"].read() == (manual / "sql-drop.html").read_bytes()
    assert dataset.queries and not dataset.missing_judged_documents
