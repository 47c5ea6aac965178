"""Ingestion throughput: the whole pipeline against the raw encoder, on the same chunk texts, in one run.

The pipeline (read the file, detect and parse it, chunk it with the model's tokenizer, embed, write the chunks
with their full-text vectors and HNSW index entries, in transactions) indexes a real corpus (the PostgreSQL
manual from Debian's postgresql-doc-15 by default) into a scratch collection. Then the raw reference,
`SentenceTransformer.encode` with the same model, batch size and normalization, embeds exactly the texts the
pipeline embedded, and so does the ONNX Runtime copy the pipeline embeds with (unless
KNOWLEDGE_EMBEDDING_RUNTIME=torch), alone. All use the same loaded model in the same process.

    .venv/bin/python benchmarks/ingest.py [--source DIR] [--limit N] [--keep]

It uses the database the settings point at (DATABASE_URL, or the embedded one).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_SOURCE = Path("/usr/share/doc/postgresql-doc-15/html")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--limit", type=int, default=0, help="only the first N files (0: all)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch collection afterwards")
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings

    from knowledge import chunking, services
    from knowledge.embeddings import MINILM, OnnxEmbedder, embed_in_batches, get_embedder, minilm_path
    from knowledge.management.commands.ingest import DOCUMENT_SUFFIXES
    from knowledge.models import Chunk, Collection, Document

    files = sorted(p for p in args.source.rglob("*") if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES)
    if args.limit:
        files = files[: args.limit]
    if not files:
        print(f"no documents under {args.source} (install Debian's postgresql-doc-15, or pass --source)")
        return 2

    try:  # the reference: the model run by sentence-transformers itself (optional: needs torch)
        from sentence_transformers import SentenceTransformer
    except ImportError:
        print("the reference needs sentence-transformers: scripts/install_python_deps.sh --torch")
        return 2
    reference = SentenceTransformer(str(minilm_path()), device="cpu")
    embedder = get_embedder(MINILM)  # loaded once, before any timing, for both measurements
    embedder.embed_documents(["warm-up"] * 8)
    slug = f"bench-ingest-{int(time.time())}"
    collection = services.collection_create(name=slug, slug=slug, embedding_model=MINILM)
    try:
        started = time.perf_counter()
        failed = 0
        for item in services.documents_import(
            collection=collection,
            files=((str(p.relative_to(args.source)), p.read_bytes) for p in files),
            index_now=True,
        ):
            failed += item.document is None or item.document.status == Document.Status.FAILED
        pipeline_seconds = time.perf_counter() - started

        chunks = list(
            Chunk.objects.filter(collection=collection)
            .select_related("document")
            .order_by("document_id", "position")
        )
        texts = [
            chunking.embedding_text(
                title=c.document.title, section=c.section, text=c.text, tokenizer=embedder.tokenizer
            )
            for c in chunks
        ]
        batch = int(settings.KNOWLEDGE_EMBEDDING_BATCH_SIZE)
        started = time.perf_counter()
        reference.encode(texts, batch_size=batch, normalize_embeddings=True, show_progress_bar=False)
        raw_seconds = time.perf_counter() - started
        # What the pipeline embeds with (the ONNX Runtime graph unless KNOWLEDGE_EMBEDDING_RUNTIME=torch), alone.
        onnx_seconds = None
        if isinstance(embedder, OnnxEmbedder):
            onnx = embedder.encoder()
            started = time.perf_counter()
            embed_in_batches(onnx, texts, batch)
            onnx_seconds = time.perf_counter() - started
    finally:
        if not args.keep:
            Collection.objects.filter(pk=collection.pk).delete()

    tokens = sum(c.token_count for c in chunks)
    pipeline_rate = len(chunks) / pipeline_seconds
    raw_rate = len(chunks) / raw_seconds
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, model threads {settings.KNOWLEDGE_TORCH_THREADS or 'default'}, "
        f"python {platform.python_version()}, database {settings.DATABASES['default']['ENGINE']}"
    )
    print(
        f"corpus: {len(files)} files from {args.source} ({failed} failed), {len(chunks)} chunks, "
        f"{tokens / max(len(chunks), 1):.0f} tokens per chunk on average, batch size {batch}"
    )
    print(f"{'':28}{'seconds':>10}{'chunks/s':>12}")
    print(f"{'pipeline (end to end)':28}{pipeline_seconds:>10.1f}{pipeline_rate:>12.1f}")
    print(f"{'raw model.encode (torch)':28}{raw_seconds:>10.1f}{raw_rate:>12.1f}")
    if onnx_seconds is not None:
        print(f"{'raw ONNX Runtime graph':28}{onnx_seconds:>10.1f}{len(chunks) / onnx_seconds:>12.1f}")
    print(
        f"ratio pipeline / raw sentence-transformers encoder: {pipeline_rate / raw_rate:.3f} (target >= 0.85)"
    )
    if onnx_seconds is not None:
        print(f"ratio pipeline / the ONNX graph it embeds with, alone: {onnx_seconds / pipeline_seconds:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
