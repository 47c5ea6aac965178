import json
import math
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.text import slugify
from tqdm import tqdm

from chat import evaluation
from chat.llm import llm_configured
from core.errors import DomainError
from knowledge import evaluation as retrieval_evaluation


class Command(BaseCommand):
    help = (
        "Measure answers on a BEIR-layout data set (corpus.jsonl, queries.jsonl, qrels/test.tsv): index the "
        "corpus into a scratch collection through the real pipeline, ask every judged question through the "
        "chat's own answer service (extractive, or the LLM when OPENAI_BASE_URL is configured), each in a new "
        "conversation over that collection, and print the share of answers citing a judged-relevant document, "
        "citation precision (micro and macro), the share of the answers' sentences citing a judged document, "
        "abstentions and latency. With --out-of-domain, also the share of questions the corpus cannot answer "
        f"that are correctly declined. The questions are asked as the staff user {evaluation.EVALUATION_USERNAME!r}, "
        "created (without a usable password) on the first run and reused afterwards; its conversations are "
        "deleted once measured."
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
        parser.add_argument(
            "--limit-queries",
            type=int,
            help="use only the first N questions of each set (judged, out-of-domain)",
        )
        parser.add_argument(
            "--out-of-domain",
            type=Path,
            help="a queries.jsonl of questions the corpus cannot answer, e.g. benchmarks/data/out-of-domain/"
            "queries.jsonl: their answers should abstain",
        )
        parser.add_argument(
            "--json", type=Path, help="also write the figures and every question's answer to this file"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        corpus_folder = Path(options["corpus_from"] or options["dataset"])
        slug = options["collection"] or (
            f"{retrieval_evaluation.SCRATCH_PREFIX}{slugify(corpus_folder.resolve().name)}"
        )
        limit = options["limit_queries"]
        try:
            dataset = retrieval_evaluation.dataset_read(
                folder=Path(options["dataset"]), corpus_folder=corpus_folder, split=options["split"]
            )
            out_of_domain = (
                evaluation.questions_read(Path(options["out_of_domain"])) if options["out_of_domain"] else {}
            )
            user = evaluation.evaluation_user_get_or_create()
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        dataset = retrieval_evaluation.limit_queries(dataset, limit)
        if limit is not None:
            out_of_domain = dict(list(out_of_domain.items())[:limit])
        self.stdout.write(
            f"{len(dataset.corpus)} documents, {len(dataset.queries)} judged questions"
            + (f", {len(out_of_domain)} out-of-domain questions" if out_of_domain else "")
            + f"; answers by {_answerer()}"
        )
        imported = self._import(dataset, slug, reuse=options["reuse"])
        runs = [
            self._run(Path(options["dataset"]).resolve().name, dataset.queries, dataset.qrels, imported, user)
        ]
        if out_of_domain:
            runs.append(self._run("out-of-domain", out_of_domain, {}, imported, user))
        self._table(runs)
        if options["json"]:
            self._json(Path(options["json"]), runs)

    def _import(
        self, dataset: retrieval_evaluation.Dataset, slug: str, *, reuse: bool
    ) -> retrieval_evaluation.CorpusImported:
        try:
            return retrieval_evaluation.corpus_import_reported(
                dataset=dataset,
                slug=slug,
                reuse=reuse,
                write=self.stdout.write,
                warn=lambda line: self.stdout.write(self.style.WARNING(line)),
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc

    def _run(
        self,
        name: str,
        questions: dict[str, str],
        qrels: dict[str, dict[str, int]],
        imported: retrieval_evaluation.CorpusImported,
        user: Any,
    ) -> evaluation.AnswerRun:
        with tqdm(total=len(questions), unit="question", desc=name, disable=None, file=sys.stderr) as bar:
            return evaluation.answers_run(
                name=name,
                questions=questions,
                qrels=qrels,
                imported=imported,
                user=user,
                on_question=lambda done, total: bar.update(done - bar.n),
            )

    def _table(self, runs: list[evaluation.AnswerRun]) -> None:
        judged, rest = runs[0], runs[1:]

        def judged_only(value: float) -> tuple[str, ...]:
            return (_figure(value), *("" for _ in rest))

        rows = [
            ("", *(run.name for run in runs)),
            ("questions", *(str(run.questions) for run in runs)),
            ("cite a judged-relevant document", *judged_only(judged.cites_relevant_share)),
            ("citation precision (micro)", *judged_only(judged.precision_micro)),
            ("citation precision (macro)", *judged_only(judged.precision_macro)),
            ("sentences from judged documents", *judged_only(judged.sentences_relevant_share)),
            ("abstained", *(_figure(run.abstained_share) for run in runs)),
            ("failed (LLM errors)", *(str(run.failed) for run in runs)),
            ("latency p50 ms", *(f"{run.latency_p50_ms:.1f}" for run in runs)),
            ("latency p95 ms", *(f"{run.latency_p95_ms:.1f}" for run in runs)),
        ]
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        for row in rows:
            self.stdout.write(
                "  ".join(
                    cell.ljust(width) if column == 0 else cell.rjust(width)
                    for column, (cell, width) in enumerate(zip(row, widths, strict=True))
                )
            )
        if rest:
            self.stdout.write(
                f"out-of-domain correctly abstained {_figure(rest[0].abstained_share)}; "
                f"in-domain wrongly refused {_figure(judged.abstained_share)}"
            )

    def _json(self, path: Path, runs: list[evaluation.AnswerRun]) -> None:
        payload = {
            "answerer": _answerer(),
            "sets": {
                run.name: {
                    "summary": run.summary(),
                    "per_question": {
                        result.query_id: {
                            "question": result.question,
                            "outcome": result.outcome,
                            "abstained": result.abstained,
                            "cited": result.cited,
                            "cited_relevant": result.cited_relevant,
                            "sentences": result.sentences,
                            "sentences_relevant": result.sentences_relevant,
                            "latency_ms": result.latency_ms,
                            "best_similarity": result.best_similarity,
                            "answer": result.answer,
                        }
                        for result in run.results
                    },
                }
                for run in runs
            },
        }
        path.write_text(json.dumps(payload, indent=1))
        self.stdout.write(f"written {path}")


def _answerer() -> str:
    return f"the LLM {settings.CHAT_LLM_MODEL}" if llm_configured() else "the extractive answerer"


def _figure(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"
