"""Retrieval evaluation on BEIR-layout data sets: the reader, the metrics, and the run over retrieval modes.

Judgments in BEIR sets are per document while search ranks chunks, so a ranked chunk list becomes a ranked
document list by each document's best (first) chunk, and the metrics are computed on documents. The metrics follow
the usual definitions (those of trec_eval and BEIR): linear gains, log2 discounts, the ideal ranking from the
judgments, queries without a relevant document left out.

A corpus row holds its `text` (indexed as a Markdown file under its title) or names a `file` (a path, absolute or
relative to the corpus folder), which is indexed through the same upload path as any file, so that PDFs and HTML
pages are parsed as a user's would be. Judgments may name a page of a document, `R-admin#page=23` (1-based):
then a hit counts for the page its chunk starts on, and each page is ranked by its best chunk.

Beside the product's modes, the same run measures the naive baseline of `knowledge.baseline` on the same texts.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from core.errors import InvalidInput
from knowledge import services
from knowledge.baseline import BASELINE_MODES, Baseline, BaselineMode, baseline_build
from knowledge.embeddings import Embedder
from knowledge.models import Collection, Document
from knowledge.parsing import parse
from knowledge.search import Mode, SearchParams, search

ProductMode = Literal["lexical", "dense", "hybrid", "hybrid+rerank"]
EvalMode = ProductMode | BaselineMode
PRODUCT_MODES: tuple[ProductMode, ...] = ("lexical", "dense", "hybrid", "hybrid+rerank")
EVAL_MODES: tuple[EvalMode, ...] = (*PRODUCT_MODES, *BASELINE_MODES)
_SEARCH_MODE: dict[ProductMode, Mode] = {
    "lexical": "lexical",
    "dense": "dense",
    "hybrid": "hybrid",
    "hybrid+rerank": "hybrid",
}
METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
# Chunks asked of search per query: the most it returns, and enough to rank about a hundred distinct documents.
CHUNK_DEPTH = 200
# Scratch collections are emptied and refilled; a slug outside this prefix is never touched.
SCRATCH_PREFIX = "eval-"


class DatasetError(InvalidInput):
    """The data set cannot be read."""


PAGE_MARK = "#page="


@dataclass(frozen=True)
class CorpusEntry:
    doc_id: str
    title: str
    text: str
    file: Path | None = None  # indexed from this file instead of `text`

    def read(self) -> bytes:
        """The bytes that are indexed for this entry: the file's, or the text as Markdown."""
        if self.file is None:
            return corpus_markdown(self).encode("utf-8")
        try:
            return self.file.read_bytes()
        except OSError as exc:
            raise DatasetError(f"{self.doc_id}: cannot read {self.file} ({exc.strerror}).") from exc

    @property
    def upload_name(self) -> str:
        """A file name for the entry, unique within the corpus as its id is."""
        if self.file is None:
            return f"{self.doc_id}.md"
        stem = self.doc_id.replace("/", "__")
        return stem if stem.endswith(self.file.suffix) else f"{stem}{self.file.suffix}"


@dataclass(frozen=True)
class Dataset:
    corpus: dict[str, CorpusEntry]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    missing_judged_documents: int = 0

    @property
    def by_page(self) -> bool:
        """Whether the judgments name pages of documents rather than whole documents."""
        return any(PAGE_MARK in doc_id for judged in self.qrels.values() for doc_id in judged)


def judged_document(judged_id: str) -> str:
    """The corpus id a judgment is about: `R-admin` for `R-admin#page=23`."""
    return judged_id.split(PAGE_MARK, 1)[0]


# --- Reading a BEIR folder -----------------------------------------------------------------------------------------


def dataset_read(*, folder: Path, corpus_folder: Path | None = None, split: str = "test") -> Dataset:
    """Queries and judgments from `folder`, the corpus from `corpus_folder` (default: the same folder).

    Judgments of documents missing from the corpus are dropped (and counted), then queries without a relevant
    document and queries without judgments. Raises DatasetError for a missing or malformed file.
    """
    corpus_folder = corpus_folder or folder
    corpus = {
        str(row["_id"]): CorpusEntry(
            doc_id=str(row["_id"]),
            title=str(row.get("title") or ""),
            text=str(row.get("text") or ""),
            file=corpus_folder / str(row["file"]) if row.get("file") else None,
        )
        for row in jsonl_rows(corpus_folder / "corpus.jsonl")
    }
    all_queries = {str(row["_id"]): str(row["text"]) for row in jsonl_rows(folder / "queries.jsonl")}
    qrels: dict[str, dict[str, int]] = {}
    missing = 0
    for query_id, doc_id, score in _qrels(folder / "qrels" / f"{split}.tsv"):
        if judged_document(doc_id) not in corpus:
            missing += 1
        elif query_id in all_queries:
            qrels.setdefault(query_id, {})[doc_id] = score
    qrels = {query_id: judged for query_id, judged in qrels.items() if any(s > 0 for s in judged.values())}
    queries = {query_id: text for query_id, text in all_queries.items() if query_id in qrels}
    return Dataset(corpus=corpus, queries=queries, qrels=qrels, missing_judged_documents=missing)


def jsonl_rows(path: Path, *, text: bool = False) -> list[dict[str, object]]:
    """The objects of a BEIR .jsonl file, each with an `_id` (and a non-blank `text` when asked). Raises
    DatasetError naming the file and line of a bad row."""
    if not path.is_file():
        raise DatasetError(f"{path} does not exist.")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}, line {number}: not JSON ({exc.msg}).") from exc
            if not isinstance(row, dict) or "_id" not in row:
                expected = "an _id and a text" if text else "an _id"
                raise DatasetError(f"{path}, line {number}: an object with {expected} is expected.")
            if text and not str(row.get("text") or "").strip():
                raise DatasetError(f"{path}, line {number}: an object with an _id and a text is expected.")
            rows.append(row)
    return rows


def _qrels(path: Path) -> list[tuple[str, str, int]]:
    if not path.is_file():
        raise DatasetError(f"{path} does not exist.")
    rows = []
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or (number == 1 and row[0] == "query-id"):
                continue
            try:
                query_id, doc_id, score = row[0], row[1], int(row[2])
            except (IndexError, ValueError) as exc:
                raise DatasetError(f"{path}, line {number}: expected query-id, corpus-id, score.") from exc
            rows.append((query_id, doc_id, score))
    return rows


def corpus_markdown(entry: CorpusEntry) -> str:
    """The file that stands for a corpus entry: its text, under its title as a `#` heading unless it has one."""
    if entry.text.startswith("# ") or not entry.title:
        return entry.text
    return f"# {entry.title}\n\n{entry.text}"


# --- Metrics -------------------------------------------------------------------------------------------------------


def documents_by_best_chunk(chunk_documents: Iterable[str]) -> list[str]:
    """The documents of a ranked chunk list, each at the rank of its best (first) chunk."""
    return list(dict.fromkeys(chunk_documents))


def ndcg_at_k(*, ranking: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """Normalized discounted cumulative gain of the first `k` of `ranking`: gain rel, discount log2(rank + 1)."""
    gains = sorted((grade for grade in relevance.values() if grade > 0), reverse=True)
    ideal = sum(grade / math.log2(rank + 2) for rank, grade in enumerate(gains[:k]))
    if ideal == 0:
        return 0.0
    found = sum(
        max(relevance.get(doc_id, 0), 0) / math.log2(rank + 2) for rank, doc_id in enumerate(ranking[:k])
    )
    return found / ideal


def recall_at_k(*, ranking: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """The share of the relevant documents found in the first `k` of `ranking`."""
    relevant = {doc_id for doc_id, grade in relevance.items() if grade > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def mrr_at_k(*, ranking: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """The reciprocal rank of the first relevant document in the first `k` of `ranking`, 0 when there is none."""
    for rank, doc_id in enumerate(ranking[:k], start=1):
        if relevance.get(doc_id, 0) > 0:
            return 1.0 / rank
    return 0.0


def query_metrics(*, ranking: Sequence[str], relevance: Mapping[str, int]) -> dict[str, float]:
    return {
        "ndcg@10": ndcg_at_k(ranking=ranking, relevance=relevance, k=10),
        "recall@10": recall_at_k(ranking=ranking, relevance=relevance, k=10),
        "recall@100": recall_at_k(ranking=ranking, relevance=relevance, k=100),
        "mrr@10": mrr_at_k(ranking=ranking, relevance=relevance, k=10),
    }


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else math.nan


# --- Ingesting the corpus ------------------------------------------------------------------------------------------


@dataclass
class CorpusImported:
    collection: Collection
    # What a hit's document id stands for in the judgments.
    doc_ids: dict[int, str]
    outcomes: dict[str, int] = field(default_factory=lambda: {"created": 0, "updated": 0, "unchanged": 0})
    failures: list[tuple[str, str]] = field(default_factory=list)
    emptied: int = 0
    by_page: bool = False

    def judged_id(self, document_id: int, page_number: int | None) -> str:
        """The id the judgments know a hit (or a cited chunk) by: its corpus id, and its page when judged so."""
        doc_id = self.doc_ids.get(document_id, f"document:{document_id}")
        return f"{doc_id}{PAGE_MARK}{page_number}" if self.by_page else doc_id


def corpus_import(
    *,
    dataset: Dataset,
    slug: str,
    reuse: bool,
    on_document: Callable[[int, int], None] | None = None,
) -> CorpusImported:
    """Index every corpus entry as one document of the scratch collection `slug`, through the real pipeline.

    Without `reuse` the collection is emptied first, so that the chunks reflect the current chunking settings;
    with it, documents already indexed from the same text are kept. Raises InvalidInput for a slug that does not
    start with "eval-": only scratch collections are ever emptied.
    """
    if not slug.startswith(SCRATCH_PREFIX):
        raise InvalidInput(f"The scratch collection's slug must start with {SCRATCH_PREFIX!r}; got {slug!r}.")
    collection = services.collection_get_or_create(
        slug=slug, name=f"Evaluation {slug}", visibility=Collection.Visibility.RESTRICTED
    )
    report = CorpusImported(collection=collection, doc_ids={}, by_page=dataset.by_page)
    if not reuse:
        for document in Document.objects.filter(collection=collection).iterator():
            services.document_delete(document=document)
            report.emptied += 1
    total = len(dataset.corpus)
    by_name = {entry.upload_name: entry for entry in dataset.corpus.values()}

    # The same grouped, pipelined import as `manage.py ingest`.
    def reader(entry: CorpusEntry) -> Callable[[], bytes]:
        return entry.read

    imported = services.documents_import(
        collection=collection,
        files=[(name, reader(entry)) for name, entry in by_name.items()],
        index_now=True,
    )
    for done, item in enumerate(imported, start=1):
        entry = by_name[item.name]
        if item.outcome == "rejected" or item.document is None:
            report.failures.append((entry.doc_id, item.message))
        else:
            report.outcomes[item.outcome] += 1
            report.doc_ids[item.document.pk] = entry.doc_id
            if item.document.status == Document.Status.FAILED:
                report.failures.append((entry.doc_id, item.document.error))
        if on_document is not None:
            on_document(done, total)
    return report


def corpus_import_reported(
    *, dataset: Dataset, slug: str, reuse: bool, write: Callable[[str], None], warn: Callable[[str], None]
) -> CorpusImported:
    """`corpus_import` with a progress bar on stderr and its counts written as the commands print them; the
    chunk table is analyzed after a change, so that the planner knows the collection's size before anything
    is timed. Raises as corpus_import does."""
    from tqdm import tqdm

    with tqdm(total=len(dataset.corpus), unit="doc", desc="indexing", disable=None, file=sys.stderr) as bar:
        imported = corpus_import(
            dataset=dataset, slug=slug, reuse=reuse, on_document=lambda done, total: bar.update(done - bar.n)
        )
    outcomes = imported.outcomes
    if outcomes["created"] or outcomes["updated"] or imported.emptied:
        services.chunk_statistics_refresh(force=True)
    write(
        f"{slug}: {outcomes['created']} indexed, {outcomes['updated']} updated, {outcomes['unchanged']} "
        f"unchanged, {len(imported.failures)} failed"
        + (f" (emptied first: {imported.emptied} documents removed)" if imported.emptied else "")
    )
    for doc_id, reason in imported.failures[:10]:
        warn(f"  FAILED {doc_id}: {reason}")
    return imported


# --- Running the queries -------------------------------------------------------------------------------------------


@dataclass
class ModeRun:
    mode: EvalMode
    per_query: dict[str, dict[str, float]]
    latencies_ms: list[float]

    @property
    def means(self) -> dict[str, float]:
        return {
            name: float(np.mean([scores[name] for scores in self.per_query.values()]))
            if self.per_query
            else 0.0
            for name in METRICS
        }

    @property
    def latency_p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def latency_p95_ms(self) -> float:
        return percentile(self.latencies_ms, 95)


def depth(params: SearchParams) -> int:
    """Chunks asked per query. Search never takes fewer candidates than it returns, so fewer candidates than
    CHUNK_DEPTH can only be measured on a list cut to that many chunks: the product's ranking, shallower."""
    return min(CHUNK_DEPTH, params.candidates) if params.candidates else CHUNK_DEPTH


def mode_run(
    *,
    mode: ProductMode,
    dataset: Dataset,
    imported: CorpusImported,
    params: SearchParams,
    on_query: Callable[[int, int], None] | None = None,
) -> ModeRun:
    """Every query of `dataset` through `knowledge.search.search` in `mode`, scored at document level.

    `params.rerank` follows the mode (hybrid+rerank reranks with `params.reranker`). A hit of a document outside
    the corpus counts as a non-relevant document. Latency is the wall time of one `search` call (query embedding
    included), after one untimed warm-up call.
    """
    rerank = mode == "hybrid+rerank"
    if rerank and params.reranker is None:
        raise InvalidInput("hybrid+rerank needs a reranker.")
    run_params = replace(params, rerank=rerank)

    def run(text: str) -> list[str]:
        result = search(
            query=text,
            collections=[imported.collection],
            limit=depth(run_params),
            mode=_SEARCH_MODE[mode],
            params=run_params,
        )
        return documents_by_best_chunk(
            imported.judged_id(hit.document_id, hit.page_number) for hit in result.hits
        )

    return _queries_run(mode, dataset, run, on_query)


def _queries_run(
    mode: EvalMode,
    dataset: Dataset,
    run: Callable[[str], list[str]],
    on_query: Callable[[int, int], None] | None,
) -> ModeRun:
    if dataset.queries:
        run(next(iter(dataset.queries.values())))  # loads the model and warms the caches
    measured = ModeRun(mode=mode, per_query={}, latencies_ms=[])
    total = len(dataset.queries)
    for done, (query_id, text) in enumerate(dataset.queries.items(), start=1):
        started = time.perf_counter()
        ranking = run(text)
        measured.latencies_ms.append((time.perf_counter() - started) * 1000)
        measured.per_query[query_id] = query_metrics(ranking=ranking, relevance=dataset.qrels[query_id])
        if on_query is not None:
            on_query(done, total)
    return measured


# --- The naive baseline --------------------------------------------------------------------------------------------


def baseline_documents(dataset: Dataset) -> dict[str, tuple[str, str]]:
    """What the baseline ranks: judged id -> (title, text). A text row is its title and text as written; a file
    is read by the platform's parser (the baseline's windows are independent of the product's chunks, not of
    the text a file holds), and split into its pages when the judgments name pages."""
    documents: dict[str, tuple[str, str]] = {}
    for entry in dataset.corpus.values():
        if entry.file is None:
            documents[entry.doc_id] = (entry.title, entry.text)
            continue
        parsed = parse(entry.read(), filename=entry.upload_name)
        title = entry.title or parsed.title
        if not dataset.by_page:
            documents[entry.doc_id] = (title, parsed.text)
            continue
        pages: dict[int, list[str]] = {}
        for block in parsed.blocks:
            pages.setdefault(block.page or 1, []).append(block.text)
        for page, texts in sorted(pages.items()):
            documents[f"{entry.doc_id}{PAGE_MARK}{page}"] = (title, "\n".join(texts))
    return documents


def baseline_prepare(
    *,
    dataset: Dataset,
    embedder: Embedder,
    cache_dir: Path | None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Baseline:
    return baseline_build(
        documents=baseline_documents(dataset), embedder=embedder, cache_dir=cache_dir, on_progress=on_progress
    )


def baseline_run(
    *,
    mode: BaselineMode,
    dataset: Dataset,
    baseline: Baseline,
    on_query: Callable[[int, int], None] | None = None,
) -> ModeRun:
    """Every query of `dataset` through the baseline in `mode`, scored as the product's modes are."""
    return _queries_run(mode, dataset, lambda text: baseline.rank(mode, text, depth=100), on_query)


def best_baseline_difference(runs: Sequence[ModeRun]) -> dict[EvalMode, dict[str, float]]:
    """Per product mode and metric: its mean minus the best baseline mode's mean on that metric."""
    baselines = [run for run in runs if run.mode in BASELINE_MODES]
    if not baselines:
        return {}
    best = {metric: max(run.means[metric] for run in baselines) for metric in METRICS}
    return {
        run.mode: {metric: run.means[metric] - best[metric] for metric in METRICS}
        for run in runs
        if run.mode not in BASELINE_MODES
    }


def limit_queries(dataset: Dataset, count: int | None) -> Dataset:
    """The first `count` queries of `dataset` (all when None), in file order."""
    if count is None or count >= len(dataset.queries):
        return dataset
    kept = dict(list(dataset.queries.items())[:count])
    return Dataset(
        corpus=dataset.corpus,
        queries=kept,
        qrels={query_id: dataset.qrels[query_id] for query_id in kept},
        missing_judged_documents=dataset.missing_judged_documents,
    )
