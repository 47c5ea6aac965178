"""Worker memory per document: the peak resident memory of indexing one hostile file, beside an ordinary one.

Each input is indexed by the worker's own code path (`services.document_ingest`, what the `ingest_document` task
runs) in a fresh process that first loads the embedding model, as a worker does; the process's peak resident set
(`ru_maxrss`) is printed beside the file's size, how the document settled (READY with its chunk count and longest
chunk, or FAILED with the reason) and the peak over the reference, an ordinary 5 KB page indexed the same way in
the same run. The inputs are the ones issue 16 was filed with, made here:

- one line of 20 MB without a space (each run of more than 100 characters is one WordPiece token),
- a 50 MB HTML page of 1.3 million elements,
- a 44 KB .docx holding 45 million characters (its XML compresses a thousandfold),
- a 1.1 MB .docx whose ZIP headers under-state the size of its document part (it inflates to 1 GB);

and the large ordinary inputs of issue 17: a CSV of 100,000 rows, and (only when named with --only, as it takes
Tesseract several seconds a page) a 300-page scanned PDF made from pages of an R manual (Debian's r-doc-pdf).

    .venv/bin/python benchmarks/memory.py [--only NAME[,NAME]] [--keep-files DIR]

Target (issues 16 and 17): a peak under 1.5 GB for each. It uses the database the settings point at (DATABASE_URL, or the
embedded one) and removes its scratch collection.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import re
import resource
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MB = 1024 * 1024
TARGET_PEAK_BYTES = 1536 * MB
_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def ordinary_page(path: Path) -> None:
    """About 5 KB of prose in paragraphs under headings: what most documents look like."""
    rng = random.Random(0)
    words = re.findall(
        r"\w+",
        "the backup restores a database from its archive while the server keeps running and every table is "
        "copied in one snapshot so that readers see a consistent state of the rows they query",
    )
    sections = []
    for number in range(1, 6):
        paragraphs = [" ".join(rng.choice(words) for _ in range(80)).capitalize() + "." for _ in range(2)]
        sections.append(f"<h2>Section {number}</h2>" + "".join(f"<p>{p}</p>" for p in paragraphs))
    path.write_text(f"<html><head><title>Backups</title></head><body>{''.join(sections)}</body></html>")


def one_long_line(path: Path) -> None:
    path.write_bytes(
        base64.b64encode(random.Random(1).randbytes(15 * MB)).replace(b"+", b"x").replace(b"/", b"y")
    )


def many_elements(path: Path) -> None:
    element = b"<p>words of text in one paragraph.</p>\n"  # 1.28 million of them
    with path.open("wb") as out:
        out.write(b"<html><head><title>Many elements</title></head><body>")
        out.write(element * (50_000_000 // len(element)))
        out.write(b"</body></html>")


def _docx_parts() -> dict[str, bytes]:
    import docx

    buffer = io.BytesIO()
    docx.Document().save(buffer)
    with zipfile.ZipFile(buffer) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _document_xml_pieces(characters: int) -> tuple[bytes, bytes, bytes]:
    head = (
        f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{_W}"><w:body><w:p><w:r><w:t>'.encode()
    )
    return head, b"a" * characters, b"</w:t></w:r></w:p></w:body></w:document>"


def dense_docx(path: Path) -> None:
    """45 million characters in one paragraph: the XML deflates to tens of kilobytes."""
    parts = _docx_parts()
    head, body, tail = _document_xml_pieces(45_000_000)
    parts["word/document.xml"] = head + body + tail
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)


def lying_docx(path: Path) -> None:
    """A document part that inflates to 1 GB, its headers saying 150 MB (under the 200 MB check)."""
    parts = _docx_parts()
    stated = 150 * MB
    head, body, tail = _document_xml_pieces(MB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    crc = 0
    chunks = []
    for piece in (head, *([body] * 1024), tail):
        crc = zlib.crc32(piece, crc)
        chunks.append(compressor.compress(piece))
    chunks.append(compressor.flush())
    deflated = b"".join(chunks)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            if name != "word/document.xml":
                archive.writestr(name, data)
    # Append the lying member by hand: a local header, its data, then the central directory rewritten.
    data = path.read_bytes()
    end = data.rindex(b"PK\x05\x06")
    entries, directory_size, directory_offset = struct.unpack("<HII", data[end + 10 : end + 20])
    name = b"word/document.xml"
    local = struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(deflated), stated, len(name), 0
    )
    central = struct.pack(
        "<IHHHHHHIIIHHHHHII",
        0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(deflated), stated, len(name), 0, 0, 0, 0, 0, directory_offset,
    )  # fmt: skip
    records = data[directory_offset : directory_offset + directory_size] + central + name
    new_end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, entries + 1, entries + 1, len(records),
                          directory_offset + len(local) + len(name) + len(deflated), 0)  # fmt: skip
    path.write_bytes(data[:directory_offset] + local + name + deflated + records + new_end)


def _size(count: int) -> str:
    return f"{count / MB:.1f} MB" if count >= MB else f"{count / 1024:.0f} KB"


def long_csv(path: Path) -> None:
    """100,000 rows of six columns, as an export from a database or a spreadsheet."""
    rng = random.Random(2)
    cities = ["Lisbon", "Oslo", "Quito", "Nairobi", "Hanoi", "Perth", "Lyon", "Tartu"]
    with path.open("w", encoding="utf-8") as out:
        out.write("order_id,customer,city,amount,shipped,note\n")
        for row in range(100_000):
            out.write(
                f"{row},customer {rng.randrange(5000)},{rng.choice(cities)},{rng.uniform(1, 900):.2f},"
                f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d},left at the door on the {row % 7}th floor\n"
            )


R_MANUAL = Path("/usr/share/doc/r-doc-pdf/manual/R-intro.pdf")


def scanned_pdf(path: Path, pages: int = 300) -> None:
    """`pages` pictures of text pages (the R manual's pages again and again, at 200 dpi) in an image-only PDF."""
    import pypdfium2 as pdfium

    if not R_MANUAL.exists():
        raise SystemExit(f"the scanned PDF is made from {R_MANUAL}: install Debian's r-doc-pdf")
    manual = pdfium.PdfDocument(R_MANUAL.read_bytes())

    def pictures():  # type: ignore[no-untyped-def]
        for index in range(1, pages):
            yield (
                manual[5 + index % (len(manual) - 5)]
                .render(scale=200 / 72, grayscale=True)
                .to_pil()
                .convert("L")
            )

    first = manual[5].render(scale=200 / 72, grayscale=True).to_pil().convert("L")
    first.save(path, format="PDF", save_all=True, append_images=pictures(), resolution=200)


INPUTS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "ordinary": ("ordinary.html", ordinary_page),
    "long-line": ("long-line.txt", one_long_line),
    "many-elements": ("many-elements.html", many_elements),
    "dense-docx": ("dense.docx", dense_docx),
    "lying-docx": ("lying.docx", lying_docx),
    "long-csv": ("orders.csv", long_csv),
    "scanned-pdf": ("scanned.pdf", scanned_pdf),
}
ONLY_WHEN_NAMED = {"scanned-pdf"}


def child(path: Path) -> int:
    """Index `path` as the worker does and print how it settled and this process's peak memory (JSON)."""
    import django

    django.setup()
    from django.conf import settings

    from knowledge import services
    from knowledge.embeddings import get_embedder
    from knowledge.models import Chunk, Collection

    get_embedder(settings.KNOWLEDGE_EMBEDDING_MODEL).embed_documents(
        ["warm-up"] * 8
    )  # loaded, as in a worker
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    size = path.stat().st_size
    raised = size > settings.KNOWLEDGE_MAX_UPLOAD_BYTES
    if raised:
        # A 300-page scan at 200 dpi is larger than the default upload limit: a deployment that takes such scans
        # raises KNOWLEDGE_MAX_UPLOAD_BYTES, and so does this process, for this input only (the parent says so).
        settings.KNOWLEDGE_MAX_UPLOAD_BYTES = size
    slug = f"bench-memory-{os.getpid()}-{int(time.time())}"
    collection = services.collection_create(name=slug, slug=slug)
    try:
        added = services.document_add(
            collection=collection, name=path.name, content=path.read_bytes(), enqueue=False
        )
        started = time.perf_counter()
        document = services.document_ingest(document_id=added.document.pk, task_id="bench-memory")
        seconds = time.perf_counter() - started
        lengths = [
            len(text) for text in Chunk.objects.filter(document=document).values_list("text", flat=True)
        ]
        result = {
            "status": str(document.status),
            "error": document.error,
            "chunks": len(lengths),
            "longest": max(lengths, default=0),
            "seconds": seconds,
            "upload_limit_raised": raised,
        }
    finally:
        Collection.objects.filter(pk=collection.pk).delete()
    result["loaded_bytes"] = loaded
    result["peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(result))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", help=f"comma-separated inputs among {', '.join(INPUTS)} (the reference always runs)"
    )
    parser.add_argument("--keep-files", type=Path, help="write the inputs here and keep them")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    named = args.only.split(",") if args.only else [n for n in INPUTS if n not in ONLY_WHEN_NAMED]
    names = ["ordinary"] + [n for n in named if n != "ordinary"]
    unknown = [n for n in names if n not in INPUTS]
    if unknown:
        parser.error(f"unknown inputs {unknown}; choose among {', '.join(INPUTS)}")
    folder = args.keep_files or Path(tempfile.mkdtemp(prefix="kb-memory-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"{'input':<15}{'file':>10}  {'settled':<62}{'peak RSS':>10}{'over ref.':>11}{'seconds':>9}")
    reference = None
    worst = 0
    try:
        for name in names:
            filename, make = INPUTS[name]
            path = folder / filename
            make(path)
            run = subprocess.run(
                [sys.executable, __file__, "--child", str(path)], capture_output=True, text=True, check=False
            )
            if run.returncode != 0:
                print(f"{name:<15} the indexing process failed ({run.returncode}):\n{run.stderr[-2000:]}")
                return 1
            result = json.loads(run.stdout.strip().splitlines()[-1])
            peak = result["peak_bytes"]
            reference = reference or peak
            worst = max(worst, peak)
            if result["status"].lower() == "ready":
                settled = f"READY, {result['chunks']} chunks, longest {result['longest']:,} chars"
            else:
                settled = f"{result['status'].upper()}: {result['error']}"
            settled = settled if len(settled) <= 60 else settled[:59] + "…"
            if result["upload_limit_raised"]:
                print(
                    f"{name:<15}(over the default upload limit: KNOWLEDGE_MAX_UPLOAD_BYTES raised for this input)"
                )
            print(
                f"{name:<15}{_size(path.stat().st_size):>10}  {settled:<62}{peak / MB:>8.0f}MB"
                f"{peak / reference:>10.2f}x{result['seconds']:>9.1f}"
            )
            if not args.keep_files:
                path.unlink()
    finally:
        if not args.keep_files:
            for leftover in folder.glob("*"):
                leftover.unlink()
            folder.rmdir()
    print(
        f"reference: the ordinary page, {reference / MB:.0f} MB peak (the model loaded); worst peak "
        f"{worst / MB:.0f} MB, target < {TARGET_PEAK_BYTES / MB:.0f} MB: {'met' if worst < TARGET_PEAK_BYTES else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
