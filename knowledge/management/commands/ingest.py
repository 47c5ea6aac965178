import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from core.errors import DomainError
from core.validators import shown
from knowledge import parsing, services
from knowledge.models import Collection, Document, WebSource

# Files picked up when a folder is walked; a file named on the command line is always taken.
DOCUMENT_SUFFIXES = parsing.FILE_SUFFIXES


class Command(BaseCommand):
    help = (
        "Add files and folders (recursively) to a collection and index them. By default the indexing runs in "
        "this process, so no worker is needed; --background leaves it to the workers and waits for them. With "
        "--url, pages are fetched from the web instead: one page, a sitemap's pages (--mode sitemap) or a crawl "
        "of one site (--mode crawl); running it again re-syncs that source."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="*", type=Path)
        parser.add_argument(
            "--url", action="append", default=[], help="a web page, sitemap or site (repeatable)"
        )
        parser.add_argument("--mode", choices=WebSource.Mode.values, default=WebSource.Mode.PAGE)
        parser.add_argument("--max-pages", type=int, default=100)
        parser.add_argument("--max-depth", type=int, default=2, help="links followed from the start (crawl)")
        parser.add_argument("--requests-per-second", type=float, default=1.0)
        parser.add_argument("--collection", required=True, help="slug of the collection (created if missing)")
        parser.add_argument("--public", action="store_true", help="make a newly created collection public")
        parser.add_argument("--background", action="store_true", help="queue the files for the workers")
        parser.add_argument(
            "--no-wait", action="store_true", help="with --background: do not wait for the workers"
        )
        parser.add_argument("--timeout", type=float, default=6 * 3600, help="seconds to wait for the workers")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["url"] and options["paths"]:
            raise CommandError("Give files and folders, or --url, not both.")
        if options["url"]:
            self._web(self._collection(options), options)
            return
        files, skipped = _collect(options["paths"])
        if not files:
            raise CommandError("No document files found under the given paths.")
        collection = self._collection(options)

        background = options["background"]
        outcomes: dict[str, int] = {"created": 0, "updated": 0, "unchanged": 0, "rejected": 0}
        failures: list[tuple[str, str]] = []
        ids: list[int] = []
        imported = services.documents_import(
            collection=collection,
            files=[(name, _reader(path)) for path, name in files],
            index_now=not background,
        )
        with tqdm(
            total=len(files),
            unit="file",
            desc="queueing" if background else "indexing",
            disable=None,
            file=sys.stderr,
        ) as bar:
            for item in imported:
                outcomes[item.outcome] += 1
                if item.document is None:
                    failures.append((item.name, item.message))
                else:
                    ids.append(item.document.pk)
                    if item.document.status == Document.Status.FAILED:
                        failures.append((item.name, item.document.error))
                bar.update(1)
                bar.set_postfix(failed=len(failures))

        if background and not options["no_wait"]:
            failures += self._wait(ids, options["timeout"])
        if not background or not options["no_wait"]:
            services.chunk_statistics_refresh()  # so that the planner knows the collection's new size
        self._summary(
            collection, outcomes, failures, skipped, waited=not background or not options["no_wait"]
        )
        if failures:
            sys.exit(1)

    def _collection(self, options: dict[str, Any]) -> Collection:
        collection = Collection.objects.filter(slug=options["collection"]).first()
        if collection is None:
            visibility = (
                Collection.Visibility.PUBLIC if options["public"] else Collection.Visibility.RESTRICTED
            )
            collection = services.collection_get_or_create(slug=options["collection"], visibility=visibility)
            self.stdout.write(
                f"Created collection {collection.slug} ({collection.get_visibility_display()})."
            )
        return collection

    def _web(self, collection: Collection, options: dict[str, Any]) -> None:
        background = options["background"]
        failed = False
        for url in options["url"]:
            try:
                report = services.web_source_ingest(
                    collection=collection,
                    url=url,
                    index_now=not background,
                    mode=options["mode"],
                    max_pages=options["max_pages"],
                    max_depth=options["max_depth"],
                    requests_per_second=options["requests_per_second"],
                )
            except DomainError as exc:
                raise CommandError(exc.message) from exc
            failures = [shown(error) for error in report.errors]
            if background and not options["no_wait"]:
                failures += [
                    f"{name}: {reason}"
                    for name, reason in self._wait(report.document_ids, options["timeout"])
                ]
            elif not background:
                failed_documents = Document.objects.filter(
                    pk__in=report.document_ids, status=Document.Status.FAILED
                )
                failures += [f"{document.source_name}: {document.error}" for document in failed_documents]
            self.stdout.write(f"{collection.slug}: {report.summary()}")
            for failure in failures:
                self.stdout.write(self.style.ERROR(f"  FAILED {shown(failure)}"))
            failed = failed or bool(failures) or report.source.sync_status == WebSource.SyncStatus.FAILED
        services.chunk_statistics_refresh()
        if failed:
            sys.exit(1)

    def _wait(self, ids: list[int], timeout: float) -> list[tuple[str, str]]:
        with tqdm(total=len(ids), unit="doc", desc="indexing", disable=None, file=sys.stderr) as bar:

            def progress(done: int, total: int) -> None:
                bar.update(done - bar.n)

            finished = services.documents_wait(ids=ids, timeout=timeout, on_progress=progress)
        if not finished:
            raise CommandError(
                f"Timed out after {timeout:.0f} s: the workers have not finished (is one running? "
                "start one with `celery -A config worker`, or run without --background)."
            )
        failed = Document.objects.filter(pk__in=ids, status=Document.Status.FAILED)
        return [(document.source_name, document.error) for document in failed]

    def _summary(
        self,
        collection: Collection,
        outcomes: dict[str, int],
        failures: list[tuple[str, str]],
        skipped: list[Path],
        *,
        waited: bool,
    ) -> None:
        ready = Document.objects.filter(collection=collection, status=Document.Status.READY).count()
        self.stdout.write(
            f"{collection.slug}: {outcomes['created']} added, {outcomes['updated']} updated, "
            f"{outcomes['unchanged']} unchanged, {len(failures)} failed"
            + (f", {len(skipped)} skipped (not a document type)" if skipped else "")
            + (
                f"; {ready} documents ready in the collection."
                if waited
                else "; indexing continues in the background."
            )
        )
        for name, reason in failures:
            # A file name can hold a newline or a text-direction override: printed as "?" so that each
            # failure stays one line that reads as it is.
            self.stdout.write(self.style.ERROR(f"  FAILED {shown(name)}: {shown(reason)}"))


def _reader(path: Path) -> Callable[[], bytes]:
    def read() -> bytes:
        with path.open("rb") as handle:
            return services.file_reader(handle)()

    return read


def _collect(paths: list[Path]) -> tuple[list[tuple[Path, str]], list[Path]]:
    """Files to add, each with its source name: the file name, or the path below the folder that was given."""
    files: list[tuple[Path, str]] = []
    skipped: list[Path] = []
    for base in paths:
        if not base.exists():
            raise CommandError(f"{base} does not exist.")
        if base.is_file():
            files.append((base, base.name))
            continue
        for path in sorted(base.rglob("*")):
            if not path.is_file() or any(part.startswith(".") for part in path.relative_to(base).parts):
                continue
            if path.suffix.lower() in DOCUMENT_SUFFIXES:
                files.append((path, str(path.relative_to(base))))
            else:
                skipped.append(path)
    return files, skipped
