"""Web sources against a real HTTP server on loopback: a small site with a sitemap index, links, a redirect, a 404,
a slow page, a huge page and a robots.txt that keeps a folder out. The private-address refusal runs against the
default setting, with name resolution and the network stood in for where a public host is needed."""

import hashlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from knowledge import fetching, services
from knowledge.embeddings import HASHING
from knowledge.models import Chunk, Document, WebPage, WebSource
from tests.factories import CollectionFactory

pytestmark = pytest.mark.django_db

HUGE_BYTES = 3 * 1024 * 1024


def html(title, body, *links):
    anchors = "".join(f'<p><a href="{link}">{link}</a></p>' for link in links)
    return (
        f"<html><head><title>{title}</title></head><body><h1>{title}</h1><p>{body}</p>{anchors}</body></html>"
    )


def sitemap(*paths, base):
    urls = "".join(f"<url><loc>{base}{path}</loc></url>" for path in paths)
    return f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'


class Site:
    """The pages the loopback server answers with; a test changes them between syncs."""

    def __init__(self):
        self.pages: dict[str, tuple[str, bytes]] = {}
        self.redirects: dict[str, str] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.base = ""

    def page(self, path, text, content_type="text/html; charset=utf-8"):
        self.pages[path] = (content_type, text.encode())


class Handler(BaseHTTPRequestHandler):
    site: Site

    def log_message(self, *args):
        pass

    def do_GET(self):
        site = self.site
        site.requests.append((self.path, dict(self.headers)))
        if self.path in site.redirects:
            self.send_response(302)
            self.send_header("Location", site.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/slow.html":
            time.sleep(1.5)
        if self.path == "/huge.html":
            # No Content-Length: the client finds out by reading.
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html><body>" + b"x" * HUGE_BYTES + b"</body></html>")
            return
        if self.path not in site.pages:
            self.send_error(404)
            return
        content_type, body = site.pages[self.path]
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def site():
    state = Site()
    handler = type("SiteHandler", (Handler,), {"site": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    state.base = base
    state.page("/robots.txt", "User-agent: *\nDisallow: /private/\n", "text/plain")
    state.page(
        "/",
        html(
            "Home",
            "The home page of the handbook.",
            "/a.html",
            "/b.html",
            "/old.html",
            "/missing.html",
            "/private/secret.html",
            "http://elsewhere.invalid/page.html",
        ),
    )
    state.page("/a.html", html("Alpha", "Alpha explains the boiler pressure.", "/deep.html"))
    state.page("/b.html", html("Beta", "Beta lists the spare parts."))
    state.page("/c.html", html("Gamma", "Gamma is where the old page moved."))
    state.page("/deep.html", html("Deep", "Two links away from home.", "/deeper.html"))
    state.page("/deeper.html", html("Deeper", "Three links away."))
    state.page("/private/secret.html", html("Secret", "Robots may not read this."))
    state.redirects["/old.html"] = f"{base}/c.html"
    state.page(
        "/sitemap.xml",
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{base}/sitemap-pages.xml</loc></sitemap></sitemapindex>",
        "application/xml",
    )
    state.page(
        "/sitemap-pages.xml",
        sitemap("/a.html", "/b.html", "/private/secret.html", "/missing.html", base=base).replace(
            "</urlset>", "<url><loc>http://elsewhere.invalid/x.html</loc></url></urlset>"
        ),
        "application/xml",
    )
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def loopback_allowed(settings):
    settings.KNOWLEDGE_WEB_ALLOW_PRIVATE = True
    settings.KNOWLEDGE_WEB_TIMEOUT_SECONDS = 0.5
    settings.KNOWLEDGE_EMBEDDING_MODEL = HASHING


@pytest.fixture
def collection():
    return CollectionFactory(slug="handbook", embedding_model=HASHING)


def add_source(collection, url, **options):
    options.setdefault("requests_per_second", 100)
    return services.web_source_create(collection=collection, url=url, enqueue=False, **options)


def names(collection):
    return sorted(Document.objects.filter(collection=collection).values_list("source_name", flat=True))


# --- One page, a sitemap, a crawl --------------------------------------------------------------------------------


def test_one_page_becomes_a_document_named_by_its_url_and_is_indexed(site, loopback_allowed, collection):
    source = add_source(collection, f"{site.base}/a.html")

    report = services.web_source_sync(source_id=source.pk, index_now=True)

    document = Document.objects.get(collection=collection)
    assert document.source_name == f"{site.base}/a.html"
    assert document.title == "Alpha"
    assert document.status == Document.Status.READY
    assert "boiler pressure" in " ".join(
        Chunk.objects.filter(document=document).values_list("text", flat=True)
    )
    assert report.counts["created"] == 1
    source.refresh_from_db()
    assert source.sync_status == WebSource.SyncStatus.SYNCED
    assert source.page_count == 1 and source.last_synced_at is not None and source.next_sync_at is not None


def test_a_sitemap_index_is_followed_to_its_pages_on_the_same_site_and_robots_txt_is_respected(
    site, loopback_allowed, collection
):
    source = add_source(collection, f"{site.base}/sitemap.xml", mode=WebSource.Mode.SITEMAP)

    report = services.web_source_sync(source_id=source.pk)

    assert names(collection) == [f"{site.base}/a.html", f"{site.base}/b.html"]
    assert report.counts["blocked"] == 1  # /private/secret.html
    assert report.counts["failed"] == 1  # /missing.html
    assert "/missing.html answered 404" in " ".join(report.errors)
    assert not any(path.startswith("/private/") for path, _ in site.requests)
    source.refresh_from_db()
    assert source.sync_status == WebSource.SyncStatus.PARTIAL
    assert "404" in source.last_error


def test_a_crawl_follows_same_site_links_to_its_depth_and_through_redirects(
    site, loopback_allowed, collection
):
    source = add_source(collection, f"{site.base}/", mode=WebSource.Mode.CRAWL, max_depth=2)

    services.web_source_sync(source_id=source.pk)

    assert names(collection) == [
        f"{site.base}/",
        f"{site.base}/a.html",
        f"{site.base}/b.html",
        f"{site.base}/deep.html",
        f"{site.base}/old.html",  # the URL asked for; the content is the page it redirects to
    ]
    assert Document.objects.get(source_name=f"{site.base}/old.html").title == "Gamma"
    requested = [path for path, _ in site.requests]
    assert "/deeper.html" not in requested  # depth 3
    assert "/private/secret.html" not in requested


def test_a_crawl_stops_at_max_pages(site, loopback_allowed, collection):
    source = add_source(collection, f"{site.base}/", mode=WebSource.Mode.CRAWL, max_pages=2)

    services.web_source_sync(source_id=source.pk)

    assert names(collection) == [f"{site.base}/", f"{site.base}/a.html"]


def test_a_slow_page_times_out_and_a_huge_page_is_refused_at_the_byte_limit(
    site, loopback_allowed, collection
):
    site.page("/", html("Home", "Links to trouble.", "/slow.html", "/huge.html", "/b.html"))
    source = add_source(collection, f"{site.base}/", mode=WebSource.Mode.CRAWL, max_page_bytes=1024 * 1024)

    started = time.monotonic()
    report = services.web_source_sync(source_id=source.pk)

    assert time.monotonic() - started < 5
    assert names(collection) == [f"{site.base}/", f"{site.base}/b.html"]
    errors = " ".join(report.errors)
    assert "slow.html: the request timed out" in errors
    assert "huge.html is larger than the limit of 1,048,576 bytes" in errors
    assert report.counts["failed"] == 2


def test_the_bytes_of_a_source_are_capped(site, loopback_allowed, collection):
    budget = len(site.pages["/a.html"][1]) + 10
    source = add_source(
        collection,
        f"{site.base}/sitemap-pages.xml",
        mode=WebSource.Mode.SITEMAP,
        max_page_bytes=budget,
        max_total_bytes=budget,
    )

    report = services.web_source_sync(source_id=source.pk)

    assert names(collection) == [f"{site.base}/a.html"]
    assert f"the source's limit of {budget:,} bytes is reached" in " ".join(report.errors)
    assert [path for path, _ in site.requests if path.endswith(".html")] == ["/a.html", "/b.html"]


def test_requests_are_spaced_to_the_rate(site, loopback_allowed):
    fetcher = fetching.Fetcher(
        allow_private=True, user_agent="test", timeout=1, max_redirects=2, requests_per_second=10
    )

    started = time.monotonic()
    for _ in range(4):
        fetcher.get(f"{site.base}/b.html", max_bytes=10_000)

    assert time.monotonic() - started >= 0.3


def test_redirects_are_bounded(site, loopback_allowed):
    site.redirects["/loop.html"] = f"{site.base}/loop.html"
    fetcher = fetching.Fetcher(
        allow_private=True, user_agent="test", timeout=1, max_redirects=3, requests_per_second=100
    )

    with pytest.raises(fetching.FetchFailed, match="more than 3 redirects"):
        fetcher.get(f"{site.base}/loop.html", max_bytes=10_000)

    assert [path for path, _ in site.requests].count("/loop.html") == 4


# --- Re-sync ------------------------------------------------------------------------------------------------------


def test_a_resync_leaves_unchanged_pages_alone_versions_changed_ones_and_removes_gone_ones(
    site, loopback_allowed, collection
):
    source = add_source(collection, f"{site.base}/sitemap-pages.xml", mode=WebSource.Mode.SITEMAP)
    site.page(
        "/sitemap-pages.xml",
        sitemap("/a.html", "/b.html", "/c.html", "/deep.html", base=site.base),
        "application/xml",
    )
    services.web_source_sync(source_id=source.pk)
    before = {
        d.source_name: (d.pk, d.version, d.updated_at) for d in Document.objects.filter(collection=collection)
    }
    site.page("/b.html", html("Beta", "Beta lists the spare parts, and now the tools too."))
    del site.pages["/c.html"]  # answers 404
    site.page(
        "/sitemap-pages.xml", sitemap("/a.html", "/b.html", "/c.html", base=site.base), "application/xml"
    )
    site.requests.clear()

    report = services.web_source_sync(source_id=source.pk)

    after = {
        d.source_name: (d.pk, d.version, d.updated_at) for d in Document.objects.filter(collection=collection)
    }
    a, b = f"{site.base}/a.html", f"{site.base}/b.html"
    assert sorted(after) == [a, b]
    assert after[a] == before[a]  # untouched
    assert after[b][0] == before[b][0] and after[b][1] == 2  # a new version of the same document
    assert report.counts == {
        "created": 0,
        "updated": 1,
        "unchanged": 1,
        "removed": 2,  # /c.html answered 404, /deep.html left the sitemap
        "failed": 0,
        "blocked": 0,
    }
    sent = dict(site.requests)
    assert sent["/a.html"].get("If-None-Match")  # a conditional GET, answered 304
    assert not WebPage.objects.filter(source=source, url__endswith="/c.html").exists()


def test_a_page_whose_server_ignores_conditional_requests_is_compared_by_hash(
    site, loopback_allowed, collection
):
    source = add_source(collection, f"{site.base}/b.html")
    services.web_source_sync(source_id=source.pk)
    WebPage.objects.filter(source=source).update(etag="")  # the server's ETag is no longer sent
    document = Document.objects.get(collection=collection)

    report = services.web_source_sync(source_id=source.pk)

    assert report.counts["unchanged"] == 1
    assert Document.objects.get(pk=document.pk).updated_at == document.updated_at


def test_an_unchanged_crawl_still_follows_the_links_of_pages_answered_304(site, loopback_allowed, collection):
    source = add_source(collection, f"{site.base}/", mode=WebSource.Mode.CRAWL, max_depth=1)
    services.web_source_sync(source_id=source.pk)
    first = names(collection)

    report = services.web_source_sync(source_id=source.pk)

    assert names(collection) == first
    assert report.counts["removed"] == 0 and report.counts["unchanged"] == len(first)


def test_a_source_whose_start_cannot_be_fetched_fails_without_removing_anything(
    site, loopback_allowed, collection
):
    source = add_source(collection, f"{site.base}/sitemap-pages.xml", mode=WebSource.Mode.SITEMAP)
    services.web_source_sync(source_id=source.pk)
    kept = names(collection)
    del site.pages["/sitemap-pages.xml"]

    services.web_source_sync(source_id=source.pk)

    source.refresh_from_db()
    assert source.sync_status == WebSource.SyncStatus.FAILED
    assert "answered 404" in source.last_error
    assert names(collection) == kept


def test_the_sweep_queues_due_sources_only(
    site, loopback_allowed, collection, django_capture_on_commit_callbacks
):
    from django.utils import timezone

    due = add_source(collection, f"{site.base}/a.html")
    later = add_source(collection, f"{site.base}/b.html")
    WebSource.objects.filter(pk=due.pk).update(next_sync_at=timezone.now(), sync_status="synced")
    WebSource.objects.filter(pk=later.pk).update(
        next_sync_at=timezone.now() + timezone.timedelta(hours=1), sync_status="synced"
    )

    with django_capture_on_commit_callbacks(execute=True):
        queued = services.web_sources_queue_due()

    assert queued == [due.pk]
    assert names(collection) == [f"{site.base}/a.html"]  # the task ran (eagerly) for the due one


def test_beat_runs_the_sweep_of_due_sources(settings):
    from knowledge import tasks

    entry = settings.CELERY_BEAT_SCHEDULE["sync-due-web-sources"]

    assert entry["task"] == tasks.sync_due_web_sources.name
    assert entry["schedule"] > 0


def test_deleting_a_source_removes_its_documents(site, loopback_allowed, collection):
    source = add_source(collection, f"{site.base}/a.html")
    services.web_source_sync(source_id=source.pk)

    services.web_source_delete(source=source)

    assert names(collection) == []
    assert not WebSource.objects.exists()


# --- Addresses the server may not fetch (the default setting) ----------------------------------------------------


@pytest.fixture
def fake_dns(monkeypatch):
    """Names resolve as this table says; the network sends a "public" address to the loopback site."""
    table: dict[str, list[str]] = {}
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in table:
            return [
                (
                    socket.AF_INET6 if ":" in address else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (address, port),
                )
                for address in table[host]
            ]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(fetching.socket, "getaddrinfo", getaddrinfo)
    return table


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1.2.3:8080/admin",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://172.16.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://100.64.0.1/",
    ],
)
def test_private_loopback_link_local_multicast_and_reserved_addresses_are_refused_by_default(url):
    with pytest.raises(fetching.UrlRefused, match="KNOWLEDGE_WEB_ALLOW_PRIVATE is off"):
        fetching.url_address(url, allow_private=False)


def test_the_default_setting_refuses_private_addresses(settings):
    from config.settings import base

    assert base.KNOWLEDGE_WEB_ALLOW_PRIVATE is False


def test_a_host_name_is_refused_when_any_of_its_addresses_is_private(fake_dns, collection):
    fake_dns["intranet.example"] = ["127.0.0.1"]
    fake_dns["mixed.example"] = ["93.184.216.34", "10.0.0.7"]
    fake_dns["v6.example"] = ["::1"]

    for host in ("intranet.example", "mixed.example", "v6.example"):
        with pytest.raises(fetching.UrlRefused, match=f"{host} resolves to"):
            services.web_source_create(collection=collection, url=f"http://{host}/", enqueue=False)

    assert not WebSource.objects.exists()


@pytest.fixture
def public_site(site, fake_dns, monkeypatch, settings):
    """`public.example` resolves to a public address, which the stand-in network routes to the loopback site."""
    settings.KNOWLEDGE_WEB_TIMEOUT_SECONDS = 0.5
    fake_dns["public.example"] = ["93.184.216.34"]
    fake_dns["intranet.example"] = ["10.0.0.7"]
    port = int(site.base.rsplit(":", 1)[1])
    connected: list[str] = []
    real_create_connection = socket.create_connection

    def create_connection(address, *args, **kwargs):
        connected.append(address[0])
        if address[0] == "93.184.216.34":
            return real_create_connection(("127.0.0.1", port), *args, **kwargs)
        raise AssertionError(f"connected to {address[0]}")

    monkeypatch.setattr(fetching.socket, "create_connection", create_connection)
    return f"http://public.example:{port}", connected


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/", "http://intranet.example/"])
def test_a_redirect_from_an_allowed_host_to_a_private_one_is_refused(public_site, site, target, collection):
    base, connected = public_site
    site.redirects["/to-inside.html"] = target
    source = add_source(collection, f"{base}/to-inside.html")

    report = services.web_source_sync(source_id=source.pk)

    assert set(connected) == {"93.184.216.34"}
    assert "KNOWLEDGE_WEB_ALLOW_PRIVATE is off" in " ".join(report.errors)
    assert names(collection) == []
    source.refresh_from_db()
    assert source.sync_status == WebSource.SyncStatus.FAILED


def test_a_public_host_is_fetched_under_the_default_setting(public_site, collection):
    base, _ = public_site
    source = add_source(collection, f"{base}/b.html")

    services.web_source_sync(source_id=source.pk)

    assert names(collection) == [f"{base}/b.html"]


@pytest.mark.parametrize(
    "url", ["ftp://example.org/file", "file:///etc/passwd", "javascript:alert(1)", "http:///x"]
)
def test_only_http_and_https_urls_with_a_host_are_taken(url, collection):
    with pytest.raises(fetching.UrlRefused):
        services.web_source_create(collection=collection, url=url, enqueue=False)


def test_urls_are_cleaned_and_credentials_refused():
    assert (
        fetching.url_clean(" HTTPS://bücher.example:8443/a#part ") == "https://xn--bcher-kva.example:8443/a"
    )

    with pytest.raises(fetching.UrlRefused, match="credentials"):
        fetching.url_clean("http://user:secret@example.org/")


# --- The API ------------------------------------------------------------------------------------------------------


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def staff_api(api, staff_token):
    api.credentials(HTTP_AUTHORIZATION=f"Token {staff_token}")
    return api


def test_staff_add_a_web_source_through_the_api_and_it_syncs(
    staff_api, site, loopback_allowed, collection, django_capture_on_commit_callbacks
):
    api = staff_api

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/sources/",
            {
                "collection": "handbook",
                "url": f"{site.base}/",
                "mode": "crawl",
                "max_depth": 1,
                "requests_per_second": 50,
            },
            format="json",
        )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["mode"] == "crawl" and body["collection"] == "handbook"
    source = api.get(f"/api/sources/{body['id']}/").json()
    assert source["sync_status"] == "partial"  # the home page links to a 404
    assert "missing.html answered 404" in source["last_error"]
    assert source["page_count"] == len(names(collection)) > 1
    assert api.get("/api/sources/").json()["count"] == 1


def test_staff_resync_and_delete_a_web_source_through_the_api(
    staff_api, site, loopback_allowed, collection, django_capture_on_commit_callbacks
):
    api = staff_api
    source = add_source(collection, f"{site.base}/a.html")

    with django_capture_on_commit_callbacks(execute=True):
        resync = api.post(f"/api/sources/{source.pk}/resync/")

    assert resync.status_code == 202
    assert names(collection) == [f"{site.base}/a.html"]
    assert api.delete(f"/api/sources/{source.pk}/").status_code == 204
    assert names(collection) == []


def test_readers_may_not_list_or_add_web_sources(api, reader_token, collection):
    api.credentials(HTTP_AUTHORIZATION=f"Token {reader_token}")

    listing = api.get("/api/sources/")
    added = api.post(
        "/api/sources/", {"collection": "handbook", "url": "https://example.org/"}, format="json"
    )

    assert listing.status_code == 403
    assert added.status_code == 403
    assert not WebSource.objects.exists()


def test_anonymous_callers_are_refused(api):
    assert api.get("/api/sources/").status_code in (401, 403)


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"collection": "handbook", "url": "http://127.0.0.1:8000/admin/"}, 422),
        ({"collection": "handbook", "url": "http://169.254.169.254/"}, 422),
        ({"collection": "handbook", "url": "ftp://example.org/"}, 422),
        ({"collection": "handbook", "url": "not a url"}, 400),
        ({"collection": "handbook", "url": "https://example.org/", "mode": "everything"}, 400),
        ({"collection": "handbook", "url": "https://example.org/", "max_pages": 0}, 400),
        ({"collection": "handbook", "url": "https://example.org/", "requests_per_second": 0}, 400),
        ({"collection": "nowhere", "url": "https://example.org/"}, 404),
        ({"url": "https://example.org/"}, 400),
    ],
)
def test_invalid_web_sources_are_client_errors(staff_api, collection, payload, status, fake_dns):
    fake_dns["example.org"] = ["93.184.216.34"]

    response = staff_api.post("/api/sources/", payload, format="json")

    assert response.status_code == status, response.content
    assert response.json()
    assert not WebSource.objects.exists()


def test_the_same_url_twice_in_a_collection_is_a_conflict(api, staff_token, collection, fake_dns):
    fake_dns["example.org"] = ["93.184.216.34"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {staff_token}")
    payload = {"collection": "handbook", "url": "https://example.org/", "sync_interval_minutes": 0}
    assert api.post("/api/sources/", payload, format="json").status_code == 201

    response = api.post("/api/sources/", payload, format="json")

    assert response.status_code == 409
    assert WebSource.objects.count() == 1


# --- The command --------------------------------------------------------------------------------------------------


def test_ingest_url_adds_and_indexes_a_site_from_its_sitemap(site, loopback_allowed, capsys):
    with pytest.raises(SystemExit) as exit_info:  # /missing.html is a 404
        call_command(
            "ingest",
            url=[f"{site.base}/sitemap.xml"],
            collection="web",
            mode="sitemap",
            requests_per_second=100,
        )

    output = capsys.readouterr().out
    documents = Document.objects.filter(collection__slug="web")
    assert sorted(documents.values_list("source_name", flat=True)) == [
        f"{site.base}/a.html",
        f"{site.base}/b.html",
    ]
    assert set(documents.values_list("status", flat=True)) == {Document.Status.READY}
    assert exit_info.value.code == 1
    assert "2 added" in output and "1 failed" in output and "1 not fetched (robots.txt)" in output
    assert "FAILED" in output and "missing.html answered 404" in output


def test_ingest_url_again_resyncs_the_same_source(site, loopback_allowed, capsys):
    call_command("ingest", url=[f"{site.base}/a.html"], collection="web")
    site.page("/a.html", html("Alpha", "Alpha explains the boiler pressure and the valves."))

    call_command("ingest", url=[f"{site.base}/a.html"], collection="web")

    assert WebSource.objects.count() == 1
    assert Document.objects.get(collection__slug="web").version == 2
    assert "1 updated" in capsys.readouterr().out


def test_ingest_url_refuses_a_private_address_by_default():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="KNOWLEDGE_WEB_ALLOW_PRIVATE is off"):
        call_command("ingest", url=["http://127.0.0.1:9/"], collection="web")


# --- Admin --------------------------------------------------------------------------------------------------------


@pytest.fixture
def staff_client(client, staff_user):
    staff_user.is_superuser = True
    staff_user.save()
    client.force_login(staff_user)
    return client


def admin_form(collection, url, **fields):
    return {
        "collection": collection.pk,
        "url": url,
        "mode": "page",
        "max_pages": 10,
        "max_depth": 1,
        "max_page_bytes": 100_000,
        "max_total_bytes": 1_000_000,
        "requests_per_second": 50,
        "sync_interval_minutes": 60,
        **fields,
    }


def test_staff_add_a_page_from_the_web_in_admin(
    staff_client, site, loopback_allowed, collection, django_capture_on_commit_callbacks
):
    from django.urls import reverse

    page = staff_client.get(reverse("admin:knowledge_collection_change", args=[collection.pk]))
    assert "Add from the web" in page.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("admin:knowledge_websource_add"), admin_form(collection, f"{site.base}/a.html")
        )

    assert response.status_code == 302
    source = WebSource.objects.get()
    assert source.sync_status == WebSource.SyncStatus.SYNCED
    assert names(collection) == [f"{site.base}/a.html"]
    detail = staff_client.get(reverse("admin:knowledge_websource_change", args=[source.pk])).content.decode()
    assert f"{site.base}/a.html" in detail


def test_admin_refuses_a_private_address_with_the_reason(staff_client, collection):
    from django.urls import reverse

    response = staff_client.post(
        reverse("admin:knowledge_websource_add"), admin_form(collection, "http://169.254.169.254/latest/")
    )

    assert response.status_code == 200
    assert "KNOWLEDGE_WEB_ALLOW_PRIVATE is off" in response.content.decode()
    assert not WebSource.objects.exists()


def test_admin_sync_now_and_delete_act_through_the_services(
    staff_client, site, loopback_allowed, collection, django_capture_on_commit_callbacks
):
    from django.urls import reverse

    source = add_source(collection, f"{site.base}/b.html")
    changelist = reverse("admin:knowledge_websource_changelist")

    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(changelist, {"action": "resync_action", "_selected_action": [source.pk]})
    assert names(collection) == [f"{site.base}/b.html"]
    staff_client.post(
        changelist, {"action": "delete_selected", "_selected_action": [source.pk], "post": "yes"}
    )

    assert names(collection) == []
    assert not WebSource.objects.exists()
