"""Retrieval speed and HNSW quality, each beside exact search measured in the same run.

    .venv/bin/python benchmarks/search.py latency --collection SLUG   # the real PostgreSQL-manual collection
    .venv/bin/python benchmarks/search.py scale [--chunks 100000]      # a 100k-chunk collection built from it
    .venv/bin/python benchmarks/search.py recall [--vectors 1000000]   # 1M synthetic clustered 384-d vectors
    .venv/bin/python benchmarks/search.py embed                        # questions and chunk batches, product vs raw

`latency` and `scale` time the retrieval selector end to end (query embedding included) in hybrid mode with the
HNSW index, then the same queries with the dense part forced to an exact scan. `recall` builds an HNSW index
over synthetic vectors drawn from a mixture of clusters and measures recall@10 against exact neighbours for
several `hnsw.ef_search` values, with HNSW and exact query latency. `embed` times the product's embedding (ONNX
Runtime on the graph built from the model's weights) of questions and of chunk batches against the raw
sentence-transformers model on the same texts (needs the optional `scripts/install_python_deps.sh --torch`). The collection for `latency` comes from
`benchmarks/ingest.py --keep` or `manage.py ingest /usr/share/doc/postgresql-doc-15/html --collection SLUG`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTIONS = ROOT / "benchmarks" / "data" / "pgdocs-questions" / "queries.jsonl"
FALLBACK_QUERIES = [
    "How do I reclaim disk space after deleting many rows?",
    "Why is my query not using an index?",
    "How can I back up a database while it is in use?",
    "What does autovacuum do?",
    "pg_stat_activity",
    "How do I create a partial index?",
    "jsonb containment operator",
    "What isolation levels are supported?",
    "configure shared_buffers",
    "How does MVCC avoid read locks?",
]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def queries(limit: int) -> list[str]:
    if QUESTIONS.exists():
        loaded = [json.loads(line)["text"] for line in QUESTIONS.read_text().splitlines() if line.strip()]
    else:
        loaded = FALLBACK_QUERIES
    repeated = (loaded * (limit // max(len(loaded), 1) + 1))[:limit]
    return repeated


def timed(run: Callable[[], object], repeat: int = 1) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        out.append((time.perf_counter() - started) * 1000)
    return out


def report(label: str, hybrid_ms: list[float], dense_ms: list[float], exact_ms: list[float]) -> None:
    print(f"{label}")
    print(f"  {'':40}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}")
    for name, values in (
        ("hybrid, HNSW (the product's search)", hybrid_ms),
        ("dense only, HNSW", dense_ms),
        ("dense only, exact scan (no index)", exact_ms),
    ):
        print(
            f"  {name:40}{percentile(values, 50):>9.1f}{percentile(values, 95):>9.1f}{statistics.mean(values):>9.1f}"
        )
    print(
        f"  dense p50 ratio HNSW / exact: {percentile(dense_ms, 50) / percentile(exact_ms, 50):.3f}; "
        f"hybrid p95 {percentile(hybrid_ms, 95):.1f} ms (target < 50 ms); all timings include the query embedding"
    )


def measure_collection(
    collection: object, query_list: list[str]
) -> tuple[list[float], list[float], list[float]]:
    from django.db import connection

    from knowledge.search import search

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE knowledge_chunk")  # the planner must know the collection's size
    for query in query_list[:5]:  # warm the caches and the model
        search(query=query, collections=[collection], limit=10)
    hybrid, dense = [], []
    for q in query_list:  # interleaved, so that background load falls on both
        hybrid += timed(lambda q=q: search(query=q, collections=[collection], limit=10))
        dense += timed(lambda q=q: search(query=q, collections=[collection], limit=10, mode="dense"))
    with connection.cursor() as cursor:
        # No index scans at all: the dense part reads every chunk of the collection and sorts by distance.
        cursor.execute("SET enable_indexscan = off")
        cursor.execute("SET enable_bitmapscan = off")
        try:
            exact = [
                timed(lambda q=q: search(query=q, collections=[collection], limit=10, mode="dense"))[0]
                for q in query_list
            ]
        finally:
            cursor.execute("RESET enable_indexscan")
            cursor.execute("RESET enable_bitmapscan")
    return hybrid, dense, exact


def cmd_latency(args: argparse.Namespace) -> int:
    from django.db.models import Count

    from knowledge.models import Collection

    collection = (
        Collection.objects.filter(slug=args.collection).annotate(n=Count("documents__chunks")).first()
    )
    if collection is None:
        print(f"no collection {args.collection!r}; index the manual first (see the module docstring)")
        return 2
    hybrid, dense, exact = measure_collection(collection, queries(args.queries))
    report(f"{collection.slug}: {collection.n} chunks, {args.queries} queries", hybrid, dense, exact)
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    """A collection of `--chunks` chunks: the real collection's chunks, plus copies whose vectors are the real
    ones with noise added (so the vectors keep the real distribution), with their texts for full-text search."""
    from django.contrib.postgres.search import SearchVector
    from django.db.models import Value

    from knowledge.models import Chunk, Collection, Document

    source = Collection.objects.filter(slug=args.collection).first()
    if source is None:
        print(f"no collection {args.collection!r}; index the manual first (see the module docstring)")
        return 2
    slug = f"bench-scale-{args.chunks}"
    target = Collection.objects.filter(slug=slug).first()
    if target is None or Chunk.objects.filter(collection=target).count() < args.chunks:
        if target is not None:
            target.delete()
        target = Collection.objects.create(name=slug, slug=slug, embedding_model=source.embedding_model)
        real = list(
            Chunk.objects.filter(collection=source).values_list("text", "section", "embedding", "token_count")
        )
        rng = np.random.default_rng(0)
        document = Document.objects.create(
            collection=target,
            title="scale copy",
            source_name="scale",
            size_bytes=0,
            content_hash=f"scale-{args.chunks}",
            status=Document.Status.READY,
        )
        print(f"building {args.chunks} chunks from {len(real)} real ones…", flush=True)
        started = time.perf_counter()
        batch: list[Chunk] = []
        for position in range(args.chunks):
            text, section, embedding, tokens = real[position % len(real)]
            vector = np.asarray(embedding, dtype=np.float32)
            if position >= len(real):
                vector = vector + rng.normal(0, 0.02, size=vector.shape).astype(np.float32)
                vector /= np.linalg.norm(vector)
            batch.append(
                Chunk(
                    document=document,
                    collection=target,
                    position=position,
                    text=text,
                    section=section,
                    start_offset=0,
                    end_offset=len(text),
                    token_count=tokens,
                    embedding=vector,
                    embedding_model=target.embedding_model,
                )
            )
            if len(batch) == 2000:
                Chunk.objects.bulk_create(batch)
                batch = []
        Chunk.objects.bulk_create(batch)
        Chunk.objects.filter(collection=target).update(
            search_vector=SearchVector("section", weight="A", config="english")
            + SearchVector("text", weight="B", config="english")
            + SearchVector(Value("scale copy"), weight="A", config="english")
        )
        print(f"built in {time.perf_counter() - started:.0f} s", flush=True)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE knowledge_chunk")
    hybrid, dense, exact = measure_collection(target, queries(args.queries))
    report(
        f"{target.slug}: {Chunk.objects.filter(collection=target).count()} chunks, {args.queries} queries",
        hybrid,
        dense,
        exact,
    )
    if not args.keep:
        target.delete()
    return 0


class ClusterMixture:
    """Vectors from a mixture of clusters: each cluster has a centre and a few directions of its own along which
    its points spread (text embeddings vary along few directions: a low intrinsic dimension), plus a little
    isotropic noise; then normalized. Not uniform noise, in which every point would be about as far as any other."""

    def __init__(
        self,
        *,
        clusters: int,
        dims: int,
        intrinsic: int,
        spread: float,
        noise: float,
        rng: np.random.Generator,
    ) -> None:
        self.centers = rng.normal(0, 1, size=(clusters, dims)).astype(np.float32)
        self.centers /= np.linalg.norm(self.centers, axis=1, keepdims=True)
        bases = rng.normal(0, 1, size=(clusters, intrinsic, dims)).astype(np.float32)
        self.bases = bases / np.linalg.norm(bases, axis=2, keepdims=True)
        self.spread, self.noise, self.intrinsic = spread, noise, intrinsic

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        labels = rng.integers(0, len(self.centers), size=n)
        z = rng.normal(0, self.spread, size=(n, self.intrinsic)).astype(np.float32)
        vectors = self.centers[labels] + np.einsum("ni,nid->nd", z, self.bases[labels])
        vectors += rng.normal(0, self.noise, size=vectors.shape).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors.astype(np.float32)


def cmd_recall(args: argparse.Namespace) -> int:
    import psycopg
    from django.db import connection
    from pgvector.psycopg import register_vector

    from knowledge.models import Chunk

    # The product's own index parameters (the chunk table's HNSW index), unless the command line says otherwise.
    hnsw = next(index for index in Chunk._meta.indexes if index.name == "chunk_embedding_hnsw")
    product_m, product_ef_construction = hnsw.m, hnsw.ef_construction  # type: ignore[attr-defined]
    dims, n = 384, args.vectors
    rng = np.random.default_rng(42)
    mixture = ClusterMixture(
        clusters=args.clusters,
        dims=dims,
        intrinsic=args.intrinsic_dims,
        spread=args.spread,
        noise=args.noise,
        rng=rng,
    )
    connection.ensure_connection()
    params = connection.get_connection_params()
    conn_kwargs = {k: v for k, v in params.items() if k in ("host", "port", "user", "password", "dbname")}
    with psycopg.connect(**conn_kwargs, autocommit=True) as conn:
        register_vector(conn)
        # pgvector reports, among others, a graph that outgrew maintenance_work_mem (the build then slows down a lot).
        conn.add_notice_handler(lambda notice: print(f"  server: {notice.message_primary}", flush=True))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_vectors (id bigint PRIMARY KEY, embedding vector(384))"
        )
        have = conn.execute("SELECT count(*) FROM bench_vectors").fetchone()[0]
        # The same seed regenerates the same data, so a kept table still matches the brute-force answers.
        data = np.empty((n, dims), dtype=np.float32)
        for start in range(0, n, 100_000):
            data[start : start + 100_000] = mixture.sample(min(100_000, n - start), rng)
        if have != n:
            conn.execute("DROP INDEX IF EXISTS bench_vectors_hnsw")
            conn.execute("TRUNCATE bench_vectors")
            print(f"loading {n} vectors…", flush=True)
            started = time.perf_counter()
            with conn.cursor().copy(
                "COPY bench_vectors (id, embedding) FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "vector"])
                for i in range(n):
                    copy.write_row((i, data[i]))
            print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)
        index = conn.execute("SELECT 1 FROM pg_indexes WHERE indexname = 'bench_vectors_hnsw'").fetchone()
        m, ef_construction = args.m or product_m, args.ef_construction or product_ef_construction
        if index is None:
            conn.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
            conn.execute("SET max_parallel_maintenance_workers = 1")
            print(f"building the HNSW index (m={m}, ef_construction={ef_construction})…", flush=True)
            started = time.perf_counter()
            conn.execute(
                "CREATE INDEX bench_vectors_hnsw ON bench_vectors USING hnsw (embedding vector_cosine_ops) "
                f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)})"
            )
            print(f"built in {time.perf_counter() - started:.0f} s", flush=True)
        else:
            print(
                "reusing the kept table and its index (built with the parameters it was built with)",
                flush=True,
            )
        conn.execute("VACUUM ANALYZE bench_vectors")

        query_vectors = mixture.sample(args.queries, rng)
        # Exact neighbours by brute force (cosine on unit vectors = dot product), in blocks to bound memory.
        truth_scores = np.full((len(query_vectors), 10), -np.inf, dtype=np.float32)
        truth = np.full((len(query_vectors), 10), -1, dtype=np.int64)
        for start in range(0, n, 200_000):
            scores = query_vectors @ data[start : start + 200_000].T
            ids = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
            candidate_scores = np.concatenate([truth_scores, scores], axis=1)
            candidate_ids = np.concatenate([truth, ids], axis=1)
            top = np.argpartition(-candidate_scores, 9, axis=1)[:, :10]
            truth_scores = np.take_along_axis(candidate_scores, top, axis=1)
            truth = np.take_along_axis(candidate_ids, top, axis=1)
        sql = "SELECT id FROM bench_vectors ORDER BY embedding <=> %s LIMIT 10"
        exact_ms = []
        # prepare=False throughout: a server-side prepared statement keeps the plan it was first given, and the
        # exact scan's plan (index scans off) must never serve the HNSW measurements, nor the other way round.
        conn.execute("SET enable_indexscan = off")
        for vector in query_vectors[: args.exact_queries]:
            exact_ms.extend(timed(lambda v=vector: conn.execute(sql, (v,), prepare=False).fetchall()))
        # Check the database's exact answer agrees with the brute force (same data, same metric).
        db_exact = {row[0] for row in conn.execute(sql, (query_vectors[0],), prepare=False).fetchall()}
        conn.execute("RESET enable_indexscan")
        plan = "\n".join(
            row[0] for row in conn.execute("EXPLAIN " + sql, (query_vectors[0],), prepare=False).fetchall()
        )
        if "bench_vectors_hnsw" not in plan:
            print(f"the HNSW index is not used:\n{plan}")
            return 1
        print(
            f"{n} vectors, {args.clusters} clusters of intrinsic dimension {args.intrinsic_dims}, {args.queries} queries; "
            "database exact = brute force on query 0: "
            f"{len(db_exact & set(truth[0].tolist()))}/10"
        )
        print(f"  {'':28}{'recall@10':>10}{'p50 ms':>9}{'p95 ms':>9}")
        from knowledge.search.params import HNSW_EF_SEARCH as default_ef

        for ef in sorted(set(args.ef_search) | {default_ef}):
            conn.execute(f"SET hnsw.ef_search = {int(ef)}")
            latencies, recalls = [], []
            for qi, vector in enumerate(query_vectors):
                started = time.perf_counter()
                found = [row[0] for row in conn.execute(sql, (vector,), prepare=False).fetchall()]
                latencies.append((time.perf_counter() - started) * 1000)
                recalls.append(len(set(found) & set(truth[qi].tolist())) / 10)
            label = f"HNSW ef_search={ef}" + (" (default)" if ef == default_ef else "")
            print(
                f"  {label:28}{statistics.mean(recalls):>10.3f}{percentile(latencies, 50):>9.1f}{percentile(latencies, 95):>9.1f}"
            )
        print(
            f"  {'exact scan':28}{1.0:>10.3f}{percentile(exact_ms, 50):>9.1f}{percentile(exact_ms, 95):>9.1f}"
        )
        if not args.keep:
            conn.execute("DROP TABLE bench_vectors")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from django.conf import settings

    from knowledge.embeddings import (
        MINILM,
        OnnxEmbedder,
        SentenceTransformerEmbedder,
        get_embedder,
        minilm_path,
    )

    embedder = get_embedder(settings.KNOWLEDGE_EMBEDDING_MODEL)
    if not isinstance(embedder, OnnxEmbedder | SentenceTransformerEmbedder):
        print(f"{embedder.name} is not a sentence-transformers model")
        return 2
    try:  # the reference: the model run by sentence-transformers itself (optional: needs torch)
        from sentence_transformers import SentenceTransformer
    except ImportError:
        print("the reference needs sentence-transformers: scripts/install_python_deps.sh --torch")
        return 2
    folder = minilm_path() if embedder.name == MINILM else Path(embedder.name)
    raw = SentenceTransformer(str(folder), device="cpu")
    runtime = "onnx" if isinstance(embedder, OnnxEmbedder) else "torch"
    questions = queries(args.queries)
    for question in questions[:5]:  # warm both
        embedder.embed_query(question)
        raw.encode([question], normalize_embeddings=True, show_progress_bar=False)
    product, reference, differences = [], [], []
    for question in questions:  # interleaved, so that background load falls on both
        started = time.perf_counter()
        vector = embedder.embed_query(question)
        product.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        expected = raw.encode([question], normalize_embeddings=True, show_progress_bar=False)[0]
        reference.append((time.perf_counter() - started) * 1000)
        differences.append(float(np.abs(vector - expected).max()))
    print(f"{len(questions)} questions, {embedder.name}; the product embeds questions with {runtime}")
    print(f"  {'':44}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}")
    for name, values in (
        (f"product embed_query ({runtime})", product),
        ("raw sentence-transformers encode (torch)", reference),
    ):
        print(
            f"  {name:44}{percentile(values, 50):>9.2f}{percentile(values, 95):>9.2f}{statistics.mean(values):>9.2f}"
        )
    print(
        f"  ratio product / raw: p50 {percentile(product, 50) / percentile(reference, 50):.3f}, "
        f"p95 {percentile(product, 95) / percentile(reference, 95):.3f}; "
        f"largest coordinate difference {max(differences):.2e}"
    )
    # Chunk batches, as ingestion embeds them: ~200-token texts, the configured batch size, rounds interleaved.
    batch = int(settings.KNOWLEDGE_EMBEDDING_BATCH_SIZE)
    sentence = "The planner chooses an index scan when the estimated selectivity of the condition is low. "
    chunks = [(sentence * 14)[: 700 + 25 * (i % 9)] + f" ({i})" for i in range(batch * 4)]
    product_s, reference_s = [], []
    for _ in range(args.rounds):
        started = time.perf_counter()
        mine = embedder.embed_documents(chunks, batch_size=batch)
        product_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        theirs = raw.encode(chunks, batch_size=batch, normalize_embeddings=True, show_progress_bar=False)
        reference_s.append(time.perf_counter() - started)
    print(f"{len(chunks)} chunks of about 200 tokens in batches of {batch}, {args.rounds} interleaved rounds")
    print(f"  {'':44}{'best s':>9}{'chunks/s':>10}")
    for name, values in (
        (f"product embed_documents ({runtime})", product_s),
        ("raw sentence-transformers", reference_s),
    ):
        print(f"  {name:44}{min(values):>9.2f}{len(chunks) / min(values):>10.1f}")
    print(
        f"  ratio product / raw throughput: {min(reference_s) / min(product_s):.3f}; "
        f"largest coordinate difference {float(np.abs(mine - theirs).max()):.2e}"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Retrieval speed and HNSW recall, beside exact search.")
    sub = parser.add_subparsers(dest="command", required=True)
    latency = sub.add_parser("latency")
    latency.add_argument("--collection", default="pg-manual")
    latency.add_argument("--queries", type=int, default=200)
    scale = sub.add_parser("scale")
    scale.add_argument("--collection", default="pg-manual")
    scale.add_argument("--chunks", type=int, default=100_000)
    scale.add_argument("--queries", type=int, default=200)
    scale.add_argument("--keep", action="store_true")
    recall = sub.add_parser("recall")
    recall.add_argument("--vectors", type=int, default=1_000_000)
    recall.add_argument("--clusters", type=int, default=1000)
    recall.add_argument("--spread", type=float, default=0.35, help="std of the in-cluster coordinates")
    recall.add_argument("--intrinsic-dims", type=int, default=24)
    recall.add_argument("--noise", type=float, default=0.01, help="isotropic noise per dimension")
    recall.add_argument("--queries", type=int, default=200)
    recall.add_argument("--exact-queries", type=int, default=10)
    recall.add_argument("--ef-search", type=int, nargs="+", default=[40, 100, 200, 400, 800])
    recall.add_argument("--m", type=int, default=0, help="HNSW m (default: the chunk index's)")
    recall.add_argument(
        "--ef-construction", type=int, default=0, help="HNSW ef_construction (default: the chunk index's)"
    )
    recall.add_argument("--maintenance-work-mem", default="4GB")
    recall.add_argument("--keep", action="store_true")
    embed = sub.add_parser("embed")
    embed.add_argument("--queries", type=int, default=300)
    embed.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import django

    django.setup()
    commands = {"latency": cmd_latency, "scale": cmd_scale, "recall": cmd_recall, "embed": cmd_embed}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
