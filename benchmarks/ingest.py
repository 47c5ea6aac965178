"""Ingestion throughput: the whole pipeline against the raw encoder, on the same chunk texts, in one run.

The pipeline (read the file, detect and parse it, chunk it with the model's tokenizer, embed, write the chunks
with their full-text vectors and HNSW index entries, in transactions) indexes a real corpus (the PostgreSQL
manual from Debian's postgresql-doc-15 by default) into a scratch collection. Then the raw reference,
`SentenceTransformer.encode` with the same model, batch size and normalization, embeds exactly the texts the
pipeline embedded, and so does the ONNX Runtime copy the pipeline embeds with (unless
KNOWLEDGE_EMBEDDING_RUNTIME=torch), alone. All use the same loaded model in the same process.

    .venv/bin/python benchmarks/ingest.py [--source DIR] [--limit N] [--keep]

With --ocr it measures OCR instead: text pages of an R manual (Debian's r-doc-pdf) are rendered to pictures and put
back together as an image-only PDF, as a scanner would make it; that scan is parsed (OCR, pages per second) and
ingested end to end, and the OCR text is scored against the same pages' own text layer, read in the same run:
word accuracy = 1 - (word-level edit distance / reference words).

    .venv/bin/python benchmarks/ingest.py --ocr [--ocr-pdf FILE] [--ocr-pages 10]

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
DEFAULT_OCR_PDF = Path("/usr/share/doc/r-doc-pdf/manual/R-intro.pdf")
# The scan's resolution: what an office scanner's default "text" setting makes.
SCAN_DPI = 300


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--limit", type=int, default=0, help="only the first N files (0: all)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch collection afterwards")
    parser.add_argument("--ocr", action="store_true", help="measure OCR of a scanned PDF instead")
    parser.add_argument("--ocr-pdf", type=Path, default=DEFAULT_OCR_PDF, help="a PDF with a text layer")
    parser.add_argument("--ocr-pages", type=int, default=10, help="how many of its text pages to scan")
    args = parser.parse_args()
    if args.ocr:
        return ocr_benchmark(args.ocr_pdf, pages=args.ocr_pages, keep=args.keep)

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
            files=[(str(p.relative_to(args.source)), p.read_bytes) for p in files],
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


def ocr_benchmark(source: Path, *, pages: int, keep: bool) -> int:
    import io
    import re
    import resource

    import django

    django.setup()
    import pypdfium2 as pdfium
    from django.conf import settings

    from knowledge import parsing, services
    from knowledge.models import Collection, Document

    if not source.exists():
        print(f"no PDF at {source} (install Debian's r-doc-pdf, or pass --ocr-pdf)")
        return 2
    original = pdfium.PdfDocument(source.read_bytes())
    # Full text pages from the body of the manual (past the title page and contents): what a scanned book page is.
    chosen: list[int] = []
    for index in range(min(len(original), 200)):
        if index < 5:
            continue
        textpage = original[index].get_textpage()
        if len(textpage.get_text_bounded()) >= 2000:
            chosen.append(index)
        textpage.close()
        if len(chosen) == pages:
            break
    typed = pdfium.PdfDocument.new()
    typed.import_pages(original, chosen)
    typed_buffer = io.BytesIO()
    typed.save(typed_buffer)
    pictures = [
        typed[i].render(scale=SCAN_DPI / 72, grayscale=True).to_pil().convert("L") for i in range(len(typed))
    ]
    scan_buffer = io.BytesIO()
    pictures[0].save(
        scan_buffer, format="PDF", save_all=True, append_images=pictures[1:], resolution=SCAN_DPI
    )
    scan = scan_buffer.getvalue()

    started = time.perf_counter()
    reference = parsing.parse(typed_buffer.getvalue(), filename="typed.pdf")
    text_layer_seconds = time.perf_counter() - started
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    scanned = parsing.parse(scan, filename="scanned.pdf")
    ocr_seconds = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Tesseract's own CPU time: what a page costs on an idle core, whatever else the machine was doing meanwhile.
    tesseract_cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)

    def words_by_page(parsed: parsing.ParsedDocument) -> dict[int, list[str]]:
        result: dict[int, list[str]] = {}
        for block in parsed.blocks:
            result.setdefault(block.page or 0, []).extend(re.findall(r"\w+", block.text.lower()))
        return result

    expected, got = words_by_page(reference), words_by_page(scanned)
    errors = sum(_edit_distance(words, got.get(page, [])) for page, words in expected.items())
    reference_words = sum(len(words) for words in expected.values())

    slug = f"bench-ocr-{int(time.time())}"
    collection = services.collection_create(name=slug, slug=slug)
    try:
        started = time.perf_counter()
        [item] = services.documents_import(
            collection=collection, files=[("scanned.pdf", lambda: scan)], index_now=True
        )
        ingest_seconds = time.perf_counter() - started
        document = Document.objects.get(pk=item.document.pk) if item.document else None
        status = f"{document.status}, {document.chunk_count} chunks" if document else "refused"
    finally:
        if not keep:
            Collection.objects.filter(pk=collection.pk).delete()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    count = len(chosen)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
        f"tesseract languages {settings.KNOWLEDGE_OCR_LANGUAGES!r}"
    )
    print(
        f"scan: {count} text pages of {source.name} (pages {', '.join(str(i + 1) for i in chosen)}) rendered at "
        f"{SCAN_DPI} dpi into an image-only PDF of {len(scan) / 1e6:.1f} MB; {reference_words} reference words"
    )
    print(f"{'':34}{'seconds':>10}{'pages/s':>10}")
    print(
        f"{'text layer of the same pages':34}{text_layer_seconds:>10.2f}{count / text_layer_seconds:>10.1f}"
    )
    print(f"{'OCR of the scan (parse)':34}{ocr_seconds:>10.2f}{count / ocr_seconds:>10.2f}")
    print(
        f"{'scan ingested end to end':34}{ingest_seconds:>10.2f}{count / ingest_seconds:>10.2f}  ({status})"
    )
    print(
        f"tesseract CPU time: {tesseract_cpu / count:.2f} s a page (one thread), {count / tesseract_cpu:.2f} pages/s"
    )
    print(f"ratio OCR / text layer, pages per second: {text_layer_seconds / ocr_seconds:.4f}")
    print(
        f"word accuracy against the text layer: {1 - errors / max(reference_words, 1):.4f} (target >= 0.97)"
    )
    print(f"peak RSS: this process {own:.0f} MB, largest tesseract {children:.0f} MB")
    return 0


def _edit_distance(expected: list[str], got: list[str]) -> int:
    """Levenshtein distance counted in words (substitutions, insertions and deletions)."""
    previous = list(range(len(got) + 1))
    for i, word in enumerate(expected, 1):
        current = [i]
        for j, other in enumerate(got, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other)))
        previous = current
    return previous[-1]


if __name__ == "__main__":
    sys.exit(main())
