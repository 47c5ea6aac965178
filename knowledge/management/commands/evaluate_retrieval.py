import json
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.text import slugify
from tqdm import tqdm

from core.errors import DomainError
from knowledge import evaluation, search
from knowledge.baseline import BASELINE_MODES, OVERLAP_WORDS, WINDOW_WORDS, Baseline
from knowledge.embeddings import get_embedder
from knowledge.search import params as tuning


class Command(BaseCommand):
    help = (
        "Measure retrieval on a BEIR-layout data set (corpus.jsonl, queries.jsonl, qrels/test.tsv): index the "
        "corpus into a scratch collection through the real pipeline, run every query in each mode, and print "
        "nDCG@10, Recall@10, Recall@100, MRR@10 and latency side by side, beside a naive baseline computed in "
        "the same run (fixed windows of 180 words, BM25, the same embedding model, RRF; knowledge/baseline.py) "
        "and the product's difference from the best baseline. Retrieval's tuning is knowledge/search/params.py's constants "
        "(RRF_K, LEXICAL_OPERATOR, ...); the options below override some of them for the run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset", type=Path, help="folder with queries.jsonl and qrels/")
        parser.add_argument(
            "--corpus-from", type=Path, help="folder whose corpus.jsonl to use (default: the dataset folder)"
        )
        parser.add_argument("--split", default="test", help="the qrels file to read (qrels/SPLIT.tsv)")
        parser.add_argument(
            "--collection",
            help="slug of the scratch collection, starting with eval- (default: from the corpus)",
        )
        parser.add_argument(
            "--reuse",
            action="store_true",
            help="keep what the scratch collection already holds (otherwise it is emptied and indexed afresh)",
        )
        parser.add_argument("--limit-queries", type=int, help="use only the first N queries")
        parser.add_argument(
            "--modes",
            default="lexical,dense,hybrid,baseline-bm25,baseline-dense,baseline-rrf",
            help="comma-separated: " + ",".join(evaluation.EVAL_MODES),
        )
        parser.add_argument("--fusion", choices=["rrf", "weighted"], help=f"default: {tuning.FUSION}")
        parser.add_argument("--dense-weight", type=float, help=f"default: {tuning.HYBRID_DENSE_WEIGHT}")
        parser.add_argument(
            "--lexical-weight",
            type=float,
            help=f"default: by the query's shape, {tuning.HYBRID_TERM_LEXICAL_WEIGHT} for a term to "
            f"{tuning.HYBRID_LEXICAL_WEIGHT} for a sentence",
        )
        parser.add_argument(
            "--candidates",
            type=int,
            help=f"chunks each retriever contributes (default: the larger of {tuning.SEARCH_CANDIDATES} and "
            f"{evaluation.CHUNK_DEPTH}, so that every mode ranks as deep); fewer also cuts each ranking to that "
            "many chunks, which caps Recall@100",
        )
        parser.add_argument(
            "--json", type=Path, help="also write the means and per-query scores to this file"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        modes = [mode.strip() for mode in options["modes"].split(",") if mode.strip()]
        unknown = [mode for mode in modes if mode not in evaluation.EVAL_MODES]
        if unknown or not modes:
            raise CommandError(f"Unknown mode(s) {unknown}; use {', '.join(evaluation.EVAL_MODES)}.")
        corpus_folder = Path(options["corpus_from"] or options["dataset"])
        slug = options["collection"] or f"{evaluation.SCRATCH_PREFIX}{slugify(corpus_folder.resolve().name)}"
        try:
            dataset = evaluation.dataset_read(
                folder=Path(options["dataset"]), corpus_folder=corpus_folder, split=options["split"]
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        dataset = evaluation.limit_queries(dataset, options["limit_queries"])
        self.stdout.write(
            f"{len(dataset.corpus)} documents, {len(dataset.queries)} judged queries"
            + (
                f" ({dataset.missing_judged_documents} judgments of documents not in the corpus dropped)"
                if dataset.missing_judged_documents
                else ""
            )
        )

        reranker = None
        if "hybrid+rerank" in modes:
            reranker = search.configured_reranker()
            if reranker is None:
                modes.remove("hybrid+rerank")
                self.stdout.write(
                    "hybrid+rerank: not available, no reranker is configured (KNOWLEDGE_RERANKER_MODEL names no "
                    "local cross-encoder folder; none is installable from a package here)."
                )

        product_modes = [mode for mode in modes if mode not in BASELINE_MODES]
        imported = self._import(dataset, slug, reuse=options["reuse"]) if product_modes else None
        search_params = search.SearchParams(
            fusion=options["fusion"],
            candidates=options["candidates"] or max(tuning.SEARCH_CANDIDATES, evaluation.CHUNK_DEPTH),
            dense_weight=options["dense_weight"],
            lexical_weight=options["lexical_weight"],
            reranker=reranker,
        )
        baseline = None
        if any(mode in BASELINE_MODES for mode in modes):
            baseline = self._baseline(dataset)
        runs = [
            self._run(mode, dataset, imported, search_params)
            if mode not in BASELINE_MODES
            else self._run_baseline(mode, dataset, baseline)
            for mode in modes
        ]
        self._table(runs, search_params)
        if options["json"]:
            self._json(Path(options["json"]), runs, search_params)

    def _run(
        self,
        mode: Any,
        dataset: evaluation.Dataset,
        imported: evaluation.CorpusImported | None,
        search_params: search.SearchParams,
    ) -> evaluation.ModeRun:
        assert imported is not None  # imported whenever a product mode is asked for
        with tqdm(total=len(dataset.queries), unit="query", desc=mode, disable=None, file=sys.stderr) as bar:
            return evaluation.mode_run(
                mode=mode,
                dataset=dataset,
                imported=imported,
                params=search_params,
                on_query=lambda done, total: bar.update(done - bar.n),
            )

    def _baseline(self, dataset: evaluation.Dataset) -> Baseline:
        with tqdm(unit="window", desc="baseline", disable=None, file=sys.stderr) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                baseline = evaluation.baseline_prepare(
                    dataset=dataset,
                    embedder=get_embedder(settings.KNOWLEDGE_EMBEDDING_MODEL),
                    cache_dir=Path(settings.DATA_DIR) / "eval-cache",
                    on_progress=progress,
                )
            except DomainError as exc:
                raise CommandError(exc.message) from exc
        self.stdout.write(
            f"baseline: {len(baseline.documents)} documents, {len(baseline.owners)} windows of "
            f"{WINDOW_WORDS} words overlapping by {OVERLAP_WORDS}"
        )
        return baseline

    def _run_baseline(
        self, mode: Any, dataset: evaluation.Dataset, baseline: Baseline | None
    ) -> evaluation.ModeRun:
        with tqdm(total=len(dataset.queries), unit="query", desc=mode, disable=None, file=sys.stderr) as bar:
            assert baseline is not None  # prepared whenever a baseline mode is asked for
            return evaluation.baseline_run(
                mode=mode,
                dataset=dataset,
                baseline=baseline,
                on_query=lambda done, total: bar.update(done - bar.n),
            )

    def _import(self, dataset: evaluation.Dataset, slug: str, *, reuse: bool) -> evaluation.CorpusImported:
        try:
            return evaluation.corpus_import_reported(
                dataset=dataset,
                slug=slug,
                reuse=reuse,
                write=self.stdout.write,
                warn=lambda line: self.stdout.write(self.style.WARNING(line)),
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc

    def _table(self, runs: list[evaluation.ModeRun], search_params: search.SearchParams) -> None:
        self.stdout.write(
            f"fusion={search_params.fusion or tuning.FUSION} rrf_k={tuning.RRF_K} "
            f"weights dense={_or(search_params.dense_weight, tuning.HYBRID_DENSE_WEIGHT)} "
            f"lexical={_or(search_params.lexical_weight, tuning.HYBRID_LEXICAL_WEIGHT)} "
            f"operator={tuning.LEXICAL_OPERATOR} ts_norm={tuning.TS_RANK_NORMALIZATION} "
            f"candidates={search_params.candidates} chunks/query={evaluation.depth(search_params)}"
        )
        rows = [
            ("", *(run.mode for run in runs)),
            *((metric, *(f"{run.means[metric]:.4f}" for run in runs)) for metric in evaluation.METRICS),
            ("latency p50 ms", *(f"{run.latency_p50_ms:.1f}" for run in runs)),
            ("latency p95 ms", *(f"{run.latency_p95_ms:.1f}" for run in runs)),
        ]
        differences = evaluation.best_baseline_difference(runs)
        if differences:
            rows.append(("minus best baseline:", *("" for _ in runs)))
            rows.extend(
                (
                    f"  {metric}",
                    *(
                        f"{differences[run.mode][metric]:+.4f}" if run.mode in differences else ""
                        for run in runs
                    ),
                )
                for metric in evaluation.METRICS
            )
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        for row in rows:
            self.stdout.write(
                "  ".join(
                    cell.ljust(width) if column == 0 else cell.rjust(width)
                    for column, (cell, width) in enumerate(zip(row, widths, strict=True))
                )
            )

    def _json(self, path: Path, runs: list[evaluation.ModeRun], search_params: search.SearchParams) -> None:
        payload = {
            "settings": {
                "fusion": search_params.fusion or tuning.FUSION,
                "rrf_k": tuning.RRF_K,
                "dense_weight": _or(search_params.dense_weight, tuning.HYBRID_DENSE_WEIGHT),
                "lexical_weight": _or(search_params.lexical_weight, tuning.HYBRID_LEXICAL_WEIGHT),
                "lexical_operator": tuning.LEXICAL_OPERATOR,
                "ts_rank_normalization": tuning.TS_RANK_NORMALIZATION,
                "candidates": search_params.candidates,
            },
            "modes": {
                run.mode: {
                    "means": run.means,
                    "latency_p50_ms": run.latency_p50_ms,
                    "latency_p95_ms": run.latency_p95_ms,
                    "per_query": run.per_query,
                }
                for run in runs
            },
            "minus_best_baseline": evaluation.best_baseline_difference(runs),
        }
        path.write_text(json.dumps(payload, indent=1))
        self.stdout.write(f"written {path}")


def _or(value: float | None, default: float) -> float:
    return default if value is None else value
