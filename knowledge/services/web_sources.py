"""Web sources: pages fetched by URL into a collection, and kept in step with the site.

Each fetched page becomes a Document through `document_add`, with the page's URL as its source name, so it is parsed,
chunked and embedded as an upload is and cites its URL. A sync asks again with the page's ETag and Last-Modified,
then compares the bytes' hash: an unchanged page is left alone, a changed one becomes a new version of its document,
and a page that is gone (404/410, or no longer in the sitemap or the crawl) has its document deleted.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.errors import Conflict, DomainError, InvalidInput, ObjectNotFound
from core.jobs import BROKER_ERRORS
from knowledge import fetching
from knowledge.models import Collection, Document, WebPage, WebSource
from knowledge.services.documents import document_delete, document_import

if TYPE_CHECKING:
    from urllib.robotparser import RobotFileParser

    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

logger = logging.getLogger(__name__)

# A source queued or syncing for longer than this lost its task (the broker or the worker went away): the sweep
# queues it again. Longer than the sync task's hard time limit.
SYNC_STALE = timedelta(hours=2)
ERRORS_KEPT = 20

PageOutcome = Literal["created", "updated", "unchanged", "removed", "failed", "blocked"]


class WebSourceNotFound(ObjectNotFound):
    """No such web source."""


@dataclass
class SyncReport:
    source: WebSource
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("created", "updated", "unchanged", "removed", "failed", "blocked"), 0
        )
    )
    errors: list[str] = field(default_factory=list)
    document_ids: list[int] = field(default_factory=list)
    skipped: bool = False  # another sync of the source was running

    def summary(self) -> str:
        counts = self.counts
        return (
            f"{self.source.url}: {counts['created']} added, {counts['updated']} updated, "
            f"{counts['unchanged']} unchanged, {counts['removed']} removed, {counts['failed']} failed, "
            f"{counts['blocked']} not fetched (robots.txt)"
        )


def _limits_check(
    *, max_pages: int, max_depth: int, max_page_bytes: int, max_total_bytes: int, requests_per_second: float
) -> None:
    if max_pages < 1:
        raise InvalidInput("max_pages must be at least 1.")
    if max_depth < 0:
        raise InvalidInput("max_depth cannot be negative.")
    if not 0 < max_page_bytes <= settings.KNOWLEDGE_MAX_UPLOAD_BYTES:
        raise InvalidInput(
            f"max_page_bytes must be between 1 and {settings.KNOWLEDGE_MAX_UPLOAD_BYTES:,} (the upload limit)."
        )
    if max_total_bytes < max_page_bytes:
        raise InvalidInput("max_total_bytes must be at least max_page_bytes.")
    if not 0 < requests_per_second <= 100:
        raise InvalidInput("requests_per_second must be above 0 and at most 100.")


def web_source_create(
    *,
    collection: Collection,
    url: str,
    mode: str = WebSource.Mode.PAGE,
    max_pages: int = 100,
    max_depth: int = 2,
    max_page_bytes: int = 5 * 1024 * 1024,
    max_total_bytes: int = 100 * 1024 * 1024,
    requests_per_second: float = 1.0,
    sync_interval_minutes: int = 24 * 60,
    created_by: AbstractBaseUser | AnonymousUser | None = None,
    enqueue: bool = True,
) -> WebSource:
    """Add a web source to `collection` and queue its first sync (on commit).

    Raises UrlRefused (an InvalidInput) for a URL that is not http(s) or whose host resolves to an address the
    server may not fetch, FetchFailed when the host does not resolve, InvalidInput for limits out of range and
    Conflict when the collection already has a source with this URL."""
    url = fetching.url_clean(url)
    if len(url) > 1000:
        raise InvalidInput("The URL is longer than 1000 characters.")
    if mode not in WebSource.Mode.values:
        raise InvalidInput(f"mode must be one of {', '.join(WebSource.Mode.values)}.")
    _limits_check(
        max_pages=max_pages,
        max_depth=max_depth,
        max_page_bytes=max_page_bytes,
        max_total_bytes=max_total_bytes,
        requests_per_second=requests_per_second,
    )
    try:
        fetching.url_address(url, allow_private=settings.KNOWLEDGE_WEB_ALLOW_PRIVATE)
    except fetching.FetchFailed as exc:  # the host does not resolve: nothing to sync, say so now
        raise InvalidInput(exc.message, url=url) from exc
    with transaction.atomic():
        if WebSource.objects.filter(collection=collection, url=url).exists():
            raise Conflict(f"{collection.slug} already has a web source for {url}.", url=url)
        source = WebSource.objects.create(
            collection=collection,
            url=url,
            mode=mode,
            max_pages=max_pages,
            max_depth=max_depth,
            max_page_bytes=max_page_bytes,
            max_total_bytes=max_total_bytes,
            requests_per_second=requests_per_second,
            sync_interval_minutes=sync_interval_minutes,
            created_by_id=created_by.pk if created_by is not None and created_by.is_authenticated else None,
        )
        if enqueue:
            _queue(source)
    return source


def web_source_ingest(*, collection: Collection, url: str, index_now: bool, **options: Any) -> SyncReport:
    """Sync the web source of `collection` for `url` in this process, adding it first (with `options`, as
    `web_source_create` takes them) when the collection has none; the command line's way in. Raises as
    `web_source_create` and `web_source_sync` do."""
    source = WebSource.objects.filter(collection=collection, url=fetching.url_clean(url)).first()
    if source is None:
        source = web_source_create(collection=collection, url=url, enqueue=False, **options)
    return web_source_sync(source_id=source.pk, index_now=index_now)


def web_source_request_sync(*, source: WebSource) -> WebSource:
    """Queue a sync of `source` now (on commit), unless one is already queued or running."""
    with transaction.atomic():
        source = WebSource.objects.select_for_update().get(pk=source.pk)
        if not _busy(source, now=timezone.now()):
            _queue(source)
    return source


def web_sources_queue_due(*, now: datetime | None = None) -> list[int]:
    """Queue every source whose next sync is due, and those whose queued or running sync was lost; their ids."""
    now = now or timezone.now()
    due = Q(next_sync_at__lte=now) & ~Q(
        sync_status__in=[WebSource.SyncStatus.QUEUED, WebSource.SyncStatus.RUNNING]
    )
    lost = Q(
        sync_status__in=[WebSource.SyncStatus.QUEUED, WebSource.SyncStatus.RUNNING],
        updated_at__lt=now - SYNC_STALE,
    )
    queued: list[int] = []
    for source_id in WebSource.objects.filter(due | lost).values_list("pk", flat=True):
        with transaction.atomic():
            source = WebSource.objects.select_for_update(skip_locked=True).filter(pk=source_id).first()
            if source is None or _busy(source, now=now):
                continue
            _queue(source)
            queued.append(source.pk)
    return queued


def web_source_delete(*, source: WebSource) -> None:
    """Delete a web source and the documents its pages became."""
    for page in WebPage.objects.filter(source=source).select_related("document"):
        if page.document is not None and page.document.source_name == page.url:
            document_delete(document=page.document)
    source.delete()


def _busy(source: WebSource, *, now: datetime) -> bool:
    running = source.sync_status in (WebSource.SyncStatus.QUEUED, WebSource.SyncStatus.RUNNING)
    return running and source.updated_at >= now - SYNC_STALE


def _queue(source: WebSource) -> None:
    source.sync_status = WebSource.SyncStatus.QUEUED
    source.save(update_fields=["sync_status", "updated_at"])
    source_id = source.pk
    transaction.on_commit(lambda: _send(source_id))


def _send(source_id: int) -> None:
    from knowledge.tasks import sync_web_source

    try:
        sync_web_source.delay(source_id)
    except BROKER_ERRORS as exc:
        # Left QUEUED: the sweep sends it again once SYNC_STALE has passed.
        logger.warning("web source %s: its sync could not be sent: %s", source_id, exc)


def _claim(source_id: int) -> WebSource | None:
    with transaction.atomic():
        source = WebSource.objects.select_for_update().filter(pk=source_id).first()
        if source is None:
            raise WebSourceNotFound(f"No web source {source_id}.")
        now = timezone.now()
        if source.sync_status == WebSource.SyncStatus.RUNNING and source.updated_at >= now - SYNC_STALE:
            return None
        source.sync_status = WebSource.SyncStatus.RUNNING
        source.save(update_fields=["sync_status", "updated_at"])
    return source


def web_source_sync(*, source_id: int, index_now: bool = False) -> SyncReport:
    """Fetch the pages of a web source and bring its documents in step with them; indexing is queued, or done in
    this process with `index_now`. Raises WebSourceNotFound."""
    source = _claim(source_id)
    if source is None:
        return SyncReport(source=WebSource.objects.get(pk=source_id), skipped=True)
    report = SyncReport(source=source)
    run = _Run(source=source, report=report, index_now=index_now)
    try:
        complete = run.discover_and_fetch()
    except DomainError as exc:
        report.errors.insert(0, exc.message)
        _finish(source, report, failed=True)
        return report
    except Exception as exc:
        # Not left "running" (which would make the task's own retry skip it): failed, with what stopped it.
        report.errors.insert(0, f"The sync stopped: {exc.__class__.__name__}: {exc}")
        try:
            _finish(source, report, failed=True)
        except Exception:
            logger.exception("web source %s: its failure could not be recorded", source.pk)
        raise
    if complete:
        run.remove_unseen()
    _finish(source, report, failed=False)
    return report


def _finish(source: WebSource, report: SyncReport, *, failed: bool) -> None:
    now = timezone.now()
    if failed:
        source.sync_status = WebSource.SyncStatus.FAILED
    elif report.counts["failed"]:
        source.sync_status = WebSource.SyncStatus.PARTIAL
    else:
        source.sync_status = WebSource.SyncStatus.SYNCED
    source.last_synced_at = now
    source.last_error = "\n".join(report.errors[:ERRORS_KEPT])
    source.next_sync_at = (
        now + timedelta(minutes=source.sync_interval_minutes) if source.sync_interval_minutes else None
    )
    source.page_count = WebPage.objects.filter(source=source, document__isnull=False).count()
    source.save(
        update_fields=[
            "sync_status",
            "last_synced_at",
            "last_error",
            "next_sync_at",
            "page_count",
            "updated_at",
        ]
    )
    logger.info("%s", report.summary())


@dataclass
class _PageResult:
    outcome: PageOutcome
    links: list[str] = field(default_factory=list)


class _Run:
    """One sync of one source: the fetcher, robots.txt rules per site, the byte budget, the URLs seen."""

    def __init__(self, *, source: WebSource, report: SyncReport, index_now: bool) -> None:
        self.source = source
        self.report = report
        self.index_now = index_now
        self.fetcher = fetching.Fetcher(
            allow_private=settings.KNOWLEDGE_WEB_ALLOW_PRIVATE,
            user_agent=settings.KNOWLEDGE_WEB_USER_AGENT,
            timeout=settings.KNOWLEDGE_WEB_TIMEOUT_SECONDS,
            max_redirects=settings.KNOWLEDGE_WEB_MAX_REDIRECTS,
            requests_per_second=source.requests_per_second,
        )
        self.robots: dict[str, RobotFileParser] = {}
        self.bytes_left = source.max_total_bytes
        self.seen: set[str] = set()

    def allowed(self, url: str) -> bool:
        site = fetching.origin(url)
        if site not in self.robots:
            rules = fetching.robots_fetch(self.fetcher, url)
            delay = rules.crawl_delay(settings.KNOWLEDGE_WEB_USER_AGENT)
            if delay:
                self.fetcher.slow_down(float(delay))
            self.robots[site] = rules
        return self.robots[site].can_fetch(settings.KNOWLEDGE_WEB_USER_AGENT, url)

    def discover_and_fetch(self) -> bool:
        """Fetch the source's pages; False when it stopped short (the byte budget), so that no page is taken to be
        gone for not having been reached. Raises a DomainError when the source itself cannot be read."""
        mode = self.source.mode
        if mode == WebSource.Mode.SITEMAP:
            return self._sitemap()
        if mode == WebSource.Mode.CRAWL:
            return self._crawl()
        return self._single()

    def _single(self) -> bool:
        result = self.page(self.source.url, want_links=False)
        if result.outcome == "blocked":
            raise fetching.FetchFailed(f"robots.txt does not allow fetching {self.source.url}.")
        if result.outcome == "failed":
            raise fetching.FetchFailed(self.report.errors[-1] if self.report.errors else "The page failed.")
        return True

    def _sitemap(self) -> bool:
        root = self.source.url
        pending = deque([root])
        read: set[str] = set()
        pages: list[str] = []
        while pending and len(pages) < self.source.max_pages and len(read) < fetching.SITEMAPS_MAX:
            sitemap_url = pending.popleft()
            if sitemap_url in read:
                continue
            read.add(sitemap_url)
            if not self.allowed(sitemap_url):
                raise fetching.FetchFailed(f"robots.txt does not allow fetching the sitemap {sitemap_url}.")
            answer = self.fetcher.get(sitemap_url, max_bytes=fetching.SITEMAP_MAX_BYTES)
            if answer.status != 200:
                raise fetching.FetchFailed(f"The sitemap {sitemap_url} answered {answer.status}.")
            kind, locations = fetching.sitemap_parse(answer.body)
            # The sitemap protocol: a sitemap lists URLs of its own site only.
            local = [loc for loc in locations if fetching.same_site(loc, root)]
            if kind == "sitemapindex":
                pending.extend(local)
            else:
                pages.extend(loc for loc in local if loc not in pages)
        pages = pages[: self.source.max_pages]
        for index, url in enumerate(pages):
            if self.bytes_left <= 0:
                # Still listed, only not fetched this time: not gone.
                self.seen.update(pages[index:])
                self.report.errors.append(f"Stopped at the byte limit of {self.source.max_total_bytes:,}.")
                break
            self.page(url, want_links=False)
        return True

    def _crawl(self) -> bool:
        root = self.source.url
        queue: deque[tuple[str, int]] = deque([(root, 0)])
        queued = {root}
        fetched = 0
        while queue and fetched < self.source.max_pages:
            if self.bytes_left <= 0:
                self.report.errors.append(f"Stopped at the byte limit of {self.source.max_total_bytes:,}.")
                return False
            url, depth = queue.popleft()
            result = self.page(url, want_links=depth < self.source.max_depth)
            fetched += result.outcome != "blocked"
            if url == root and result.outcome == "failed":
                raise fetching.FetchFailed(
                    self.report.errors[-1] if self.report.errors else "The start failed."
                )
            for link in result.links:
                if link not in queued and fetching.same_site(link, root):
                    queued.add(link)
                    queue.append((link, depth + 1))
        return True

    def page(self, url: str, *, want_links: bool) -> _PageResult:
        result = self._page(url, want_links=want_links)
        self.report.counts[result.outcome] += 1
        if result.outcome != "blocked":
            self.seen.add(url)
        return result

    def _page(self, url: str, *, want_links: bool) -> _PageResult:
        if not self.allowed(url):
            return _PageResult("blocked")
        page = WebPage.objects.filter(source=self.source, url=url).select_related("document").first()
        document = page.document if page is not None and _owns(page) else None
        headers: dict[str, str] = {}
        if page is not None and document is not None:
            if page.etag:
                headers["If-None-Match"] = page.etag
            if page.last_modified:
                headers["If-Modified-Since"] = page.last_modified
        limit = min(self.source.max_page_bytes, self.bytes_left)
        try:
            answer = self.fetcher.get(url, max_bytes=limit, headers=headers)
        except fetching.PageTooLarge as exc:
            if (
                limit < self.source.max_page_bytes
            ):  # over what is left of the source's bytes, not the page limit
                self.bytes_left = 0
                return self._failed(
                    url,
                    page,
                    f"{url}: not fetched, the source's limit of {self.source.max_total_bytes:,} bytes "
                    "is reached.",
                )
            return self._failed(url, page, exc.message)
        except (fetching.FetchFailed, fetching.UrlRefused) as exc:
            return self._failed(url, page, exc.message)
        if answer.status == 304 and page is not None and document is not None:
            page.fetched_at = timezone.now()
            page.status_code = 304
            page.error = ""
            page.save(update_fields=["fetched_at", "status_code", "error", "updated_at"])
            links = _stored_links(document, url=url) if want_links else []
            return _PageResult("unchanged", links)
        if answer.status in (404, 410):
            if page is not None:
                self._remove(page)
                return _PageResult("removed")
            return self._failed(url, None, f"{url} answered {answer.status}.", status_code=answer.status)
        if answer.status != 200:
            return self._failed(url, page, f"{url} answered {answer.status}.", status_code=answer.status)
        self.bytes_left -= len(answer.body)
        content = fetching.page_content(answer.body, url=answer.url) if answer.is_html else None
        links = content.links if content is not None and want_links else []
        content_hash = hashlib.sha256(answer.body).hexdigest()
        if page is None:
            page = WebPage(source=self.source, url=url)
        page.etag = answer.headers.get("etag", "")[:500]
        page.last_modified = answer.headers.get("last-modified", "")[:100]
        page.status_code = 200
        page.fetched_at = timezone.now()
        if document is not None and page.content_hash == content_hash:
            page.error = ""
            page.save()
            return _PageResult("unchanged", links)
        try:
            added = document_import(
                collection=self.source.collection,
                name=url,
                content=answer.body,
                index_now=self.index_now,
                created_by=self.source.created_by,
                title=(content.title if content is not None else "")[:500],
            )
        except DomainError as exc:
            return self._failed(url, page, f"{url}: {exc.message}")
        page.content_hash = content_hash
        page.error = ""
        # The same bytes under another URL give back that document: this page does not own it.
        page.document = added.document if added.document.source_name == url else None
        page.save()
        self.report.document_ids.append(added.document.pk)
        if added.outcome == "unchanged":
            return _PageResult("unchanged", links)
        return _PageResult("created" if added.outcome == "created" else "updated", links)

    def _failed(
        self, url: str, page: WebPage | None, reason: str, *, status_code: int | None = None
    ) -> _PageResult:
        self.report.errors.append(reason)
        if page is not None and page.pk is not None:
            page.error = reason
            page.status_code = status_code
            page.save(update_fields=["error", "status_code", "updated_at"])
        return _PageResult("failed")

    def _remove(self, page: WebPage) -> None:
        if page.document is not None and _owns(page):
            document_delete(document=page.document)
        page.delete()

    def remove_unseen(self) -> None:
        gone = (
            WebPage.objects.filter(source=self.source).exclude(url__in=self.seen).select_related("document")
        )
        for page in gone:
            self._remove(page)
            self.report.counts["removed"] += 1


def _owns(page: WebPage) -> bool:
    return page.document is not None and page.document.source_name == page.url


def _stored_links(document: Document, *, url: str) -> list[str]:
    """The links of a page that has not changed since, read from its stored copy."""
    if document.media_type and "html" not in document.media_type:
        return []
    try:
        with document.file.open("rb") as handle:
            data = handle.read()
    except OSError:
        return []
    return fetching.page_content(data, url=url).links
