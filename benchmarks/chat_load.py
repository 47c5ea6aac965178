"""Chat under load: concurrent clients asking through the HTTP API, beside the retrieval selector in-process.

The server is the production setting (gunicorn with uvicorn workers, DEBUG off, as the Docker image runs it),
not runserver. The language model is the loopback OpenAI-compatible stand-in answering at once, so what is
measured is the platform: HTTP, authentication, rate-limit check, the answer pipeline (embed the question,
hybrid search, prompt, the LLM call through the `openai` client, citation check), storing the question, the
answer and its citations. The reference is the same questions sent, in this process and at the same concurrency,
straight to the retrieval selector (`knowledge.selectors.chunk_search`: embed and hybrid search, nothing else).

    .venv/bin/python benchmarks/chat_load.py [--clients 1,8,32] [--requests 320] [--workers 2] [--mixed 20]

With `--mixed N` the highest concurrency runs once more while N documents are uploaded through
`POST /api/documents/` (one per request, from a second staff client) and indexed by a real Celery worker on the
ingestion queue started for the run (it needs the broker CELERY_BROKER_URL names). It prints that run's
questions beside the questions-only run, the uploads refused, the documents that did not settle READY within
`--settle` seconds, and each web worker's resident memory after the load (target: 0 errors, 0 refusals, every
upload READY, under 2 GB per web process).

It uses the database the settings point at (DATABASE_URL, or the embedded one); it loads the demo collection
(indexed in this process) and a benchmark user, and leaves both there. The benchmark user's conversations are
deleted at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTIONS = [
    "How do I take a backup of a database while it is in use?",
    "What does VACUUM FULL do to the table?",
    "When should I use a multicolumn index?",
    "Which index types does PostgreSQL provide?",
    "What is multiversion concurrency control?",
    "Why is routine vacuuming necessary?",
    "How do I create an index without locking writes?",
    "What is the difference between json and jsonb?",
    "How does full text search match documents to a query?",
    "How do I join two tables?",
    "What is a transaction and why does it matter?",
    "How do I read the output of EXPLAIN?",
    "Can pg_dump restore into a newer server version?",
    "What does the autovacuum daemon do?",
    "Is a GIN index good for jsonb containment queries?",
    "What isolation does a transaction block give?",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class Run:
    def __init__(self, name: str, clients: int) -> None:
        self.name = name
        self.clients = clients
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.wall = 0.0

    def row(self) -> str:
        ms = [1000 * x for x in self.latencies]
        rate = len(self.latencies) / self.wall if self.wall else 0.0
        return (
            f"{self.name:<26} {self.clients:>7} {len(self.latencies):>8} {len(self.errors):>6} {rate:>8.1f} "
            f"{percentile(ms, 0.5):>8.1f} {percentile(ms, 0.95):>8.1f} {percentile(ms, 0.99):>8.1f}"
        )


def drive(
    name: str,
    clients: int,
    total: int,
    call: Callable[[int], None],
    finish: Callable[[], None] = lambda: None,
) -> Run:
    """`total` calls of `call(i)` spread over `clients` threads, each timed; `finish()` ends each thread."""
    run = Run(name, clients)
    lock = threading.Lock()
    counter = iter(range(total))

    def client() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                finish()
                return
            started = time.perf_counter()
            try:
                call(i)
            except Exception as exc:  # noqa: BLE001 - an error is a result here, counted and shown
                with lock:
                    run.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            elapsed = time.perf_counter() - started
            with lock:
                run.latencies.append(elapsed)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    run.wall = time.perf_counter() - started
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,32", help="comma-separated concurrency levels")
    parser.add_argument("--requests", type=int, default=320, help="questions per level and path")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (WEB_CONCURRENCY)")
    parser.add_argument(
        "--mixed", type=int, default=0, help="documents uploaded during a last, mixed run (0: none)"
    )
    parser.add_argument(
        "--settle", type=int, default=600, help="seconds the mixed run's uploads may take to index"
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.clients.split(",")]

    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from chat.models import Conversation
    from knowledge import selectors
    from knowledge.embeddings import MINILM, get_embedder
    from knowledge.management.commands.load_demo import DEMO_SLUG
    from tests.llm_server import StandIn

    call_command("migrate", verbosity=0)
    call_command("load_demo", now=True, verbosity=0)
    user, _ = User.objects.get_or_create(username="chat-load-benchmark")
    token, _ = Token.objects.get_or_create(user=user)
    uploader, _ = User.objects.get_or_create(username="chat-load-uploader", defaults={"is_staff": True})
    upload_token, _ = Token.objects.get_or_create(user=uploader)
    Conversation.objects.filter(owner=user).delete()

    stand_in = StandIn().start()
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "OPENAI_BASE_URL": stand_in.base_url,
        "OPENAI_API_KEY": "placeholder",
        "CHAT_LLM_MODEL": stand_in.model,
        "CHAT_RATE_LIMIT": "0",
        # As the container entrypoint sets it: each web worker gets its share of the cores for the embedding model.
        "KNOWLEDGE_TORCH_THREADS": os.environ.get("KNOWLEDGE_TORCH_THREADS")
        or str(max(1, (os.cpu_count() or 1) // args.workers)),
    }
    server = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "config.asgi:application",
            "--worker-class", "uvicorn_worker.UvicornWorker",
            "--workers", str(args.workers), "--bind", f"127.0.0.1:{port}", "--timeout", "120",
            "--log-level", "warning",
        ],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        return _measure(
            args=args,
            levels=levels,
            port=port,
            token=token.key,
            upload_token=upload_token.key,
            user=user,
            selectors=selectors,
            embedder=get_embedder(MINILM),
            slug=DEMO_SLUG,
            server=server,
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        stand_in.stop()
        Conversation.objects.filter(owner=user).delete()


def _measure(  # type: ignore[no-untyped-def]
    *, args, levels, port, token, upload_token, user, selectors, embedder, slug, server
) -> int:
    deadline = time.time() + 120
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                break
        except OSError:
            pass
        if server.poll() is not None or time.time() > deadline:
            print("the server did not become ready")
            return 1
        time.sleep(0.5)

    local = threading.local()

    def ask(i: int) -> None:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        body = json.dumps({"question": QUESTIONS[i % len(QUESTIONS)], "collections": [slug]})
        try:
            local.conn.request(
                "POST",
                "/api/chat/ask",
                body=body,
                headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
            )
            response = local.conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            local.conn.close()
            del local.conn
            raise
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
        answer = json.loads(payload)
        if not answer["message"]["citations"]:
            raise RuntimeError(f"an answer without sources: {answer['message']['text'][:100]!r}")

    def retrieve(i: int) -> None:
        result = selectors.chunk_search(
            user=user, query=QUESTIONS[i % len(QUESTIONS)], collection_slugs=[slug], limit=8
        )
        if not result.hits:
            raise RuntimeError("no hits")

    def close_connection() -> None:
        from django.db import connection

        connection.close()  # each client thread's own connection, kept across its requests

    # Warm-up: every web worker loads the model and opens its connection; the in-process model is loaded.
    drive("warm-up", args.workers * 2, args.workers * 8, ask)
    embedder.embed_query("warm-up")

    import numpy as np
    import onnxruntime

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, onnxruntime {onnxruntime.__version__}, "
        f"numpy {np.__version__}; server: gunicorn + {args.workers} uvicorn workers, DEBUG off; "
        f"LLM: loopback stand-in answering at once"
    )
    print(
        f"{'path':<26} {'clients':>7} {'requests':>8} {'errors':>6} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
    )
    failed = False
    for clients in levels:
        # Interleaved halves so that background load falls on both paths alike.
        half = args.requests // 2
        http_runs = []
        local_runs = []
        for _ in range(2):
            http_runs.append(drive("HTTP /api/chat/ask", clients, half, ask))
            local_runs.append(drive("in-process chunk_search", clients, half, retrieve, close_connection))
        http_run = _merge(http_runs)
        local_run = _merge(local_runs)
        print(http_run.row())
        print(local_run.row())
        ratio = percentile(http_run.latencies, 0.5) / percentile(local_run.latencies, 0.5)
        per_request = (http_run.wall / len(http_run.latencies)) / (local_run.wall / len(local_run.latencies))
        print(
            f"  at {clients} clients: HTTP/in-process p50 {ratio:.2f}x, time per request "
            f"(wall / requests) {per_request:.2f}x"
        )
        for error in sorted(set(http_run.errors + local_run.errors))[:5]:
            print(f"  error: {error}")
        if http_run.errors or local_run.errors:
            failed = True
    if args.mixed:
        mixed_failed = _mixed(
            args=args, clients=levels[-1], ask=ask, questions_only=http_run, port=port, upload_token=upload_token,
            server=server,
        )  # fmt: skip
        failed = failed or mixed_failed
    return 1 if failed else 0


def upload_files(count: int) -> list[tuple[str, bytes]]:
    """`count` real pages of the PostgreSQL manual when Debian's postgresql-doc-15 is there, else made-up ones."""
    source = Path("/usr/share/doc/postgresql-doc-15/html")
    pages = sorted(source.glob("*.html")) if source.is_dir() else []
    pages = pages[:: max(1, len(pages) // max(count, 1))]  # spread over the manual: short pages and long ones
    if len(pages) >= count:
        return [(page.name, page.read_bytes()) for page in pages[:count]]
    words = re.findall(
        r"\w+", "a table keeps its rows in pages and an index finds them by key without reading the rest"
    )
    return [
        (
            f"note-{i}.md",
            (f"# Note {i}\n\n" + " ".join(words[(i + j) % len(words)] for j in range(3000))).encode(),
        )
        for i in range(count)
    ]


def _multipart(fields: dict[str, str], name: str, data: bytes) -> tuple[bytes, str]:
    boundary = secrets.token_hex(16)
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _web_workers(server: subprocess.Popen[bytes]) -> list[int]:
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


def _mixed(  # type: ignore[no-untyped-def]
    *, args, clients, ask, questions_only, port, upload_token, server
) -> bool:
    """The questions of the highest level again while `args.mixed` documents are uploaded and indexed."""
    from knowledge import services
    from knowledge.models import Collection, Document

    slug = f"bench-load-uploads-{int(time.time())}"
    collection = services.collection_create(name=slug, slug=slug)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "ingest,ingest-retry", "--concurrency", "1",
         "--loglevel", "WARNING", "--hostname", f"bench-ingest-{os.getpid()}@%h"],
        cwd=ROOT, env={**os.environ, "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                       "DJANGO_ALLOWED_HOSTS": "127.0.0.1"},
        start_new_session=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    refusals: list[str] = []
    try:
        files = upload_files(args.mixed)

        def upload_all() -> None:
            for name, data in files:
                body, content_type = _multipart({"collection": slug}, name, data)
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
                try:
                    conn.request("POST", "/api/documents/", body=body,
                                 headers={"Authorization": f"Token {upload_token}", "Content-Type": content_type})  # fmt: skip
                    response = conn.getresponse()
                    payload = response.read()
                    if response.status not in (200, 201):
                        refusals.append(f"{name}: HTTP {response.status} {payload[:200]!r}")
                except (OSError, http.client.HTTPException) as exc:
                    refusals.append(f"{name}: {type(exc).__name__}: {exc}")
                finally:
                    conn.close()

        uploader = threading.Thread(target=upload_all)
        uploader.start()
        mixed = drive("HTTP ask, 20 uploading".replace("20", str(args.mixed)), clients, args.requests, ask)
        uploader.join()
        deadline = time.time() + args.settle
        documents = Document.objects.filter(collection=collection)
        while (
            time.time() < deadline
            and documents.exclude(status__in=[Document.Status.READY, Document.Status.FAILED]).exists()
        ):
            time.sleep(2)
        ready = documents.filter(status=Document.Status.READY).count()
        not_ready = {
            str(status): n for status, n in _status_counts(documents) if status != Document.Status.READY
        }
        rss = {pid: _rss_bytes(pid) for pid in _web_workers(server)}
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
        Collection.objects.filter(slug=slug).delete()
    ms_only = [1000 * x for x in questions_only.latencies]
    ms = [1000 * x for x in mixed.latencies]
    print(mixed.row())
    print(
        f"  mixed run at {clients} clients: p50 {percentile(ms, 0.5):.0f} ms / p95 {percentile(ms, 0.95):.0f} ms "
        f"against {percentile(ms_only, 0.5):.0f} / {percentile(ms_only, 0.95):.0f} questions only; "
        f"{len(mixed.errors)} errors; uploads: {len(files)} sent, {len(refusals)} refused, {ready} READY, "
        f"not READY after the run + {args.settle} s: {not_ready or 'none'}"
    )
    print(
        "  web workers' resident memory after the load: "
        + ", ".join(f"{value / 2**20:.0f} MB" for value in rss.values())
        + " (target < 2048 MB each)"
    )
    for error in sorted(set(mixed.errors))[:5] + refusals[:5]:
        print(f"  error: {error}")
    return bool(mixed.errors or refusals or not_ready or any(value >= 2 * 2**30 for value in rss.values()))


def _status_counts(documents):  # type: ignore[no-untyped-def]
    from django.db.models import Count

    return documents.values_list("status").annotate(n=Count("pk")).values_list("status", "n")


def _merge(runs: list[Run]) -> Run:
    merged = Run(runs[0].name, runs[0].clients)
    for run in runs:
        merged.latencies += run.latencies
        merged.errors += run.errors
        merged.wall += run.wall
    return merged


if __name__ == "__main__":
    sys.exit(main())
