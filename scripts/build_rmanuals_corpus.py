"""Build the corpus of the R manuals question set: one row per manual, naming the PDF to upload.

    python scripts/build_rmanuals_corpus.py --out var/eval/rmanuals
    python scripts/build_rmanuals_corpus.py --source /usr/local/lib/R/doc/manual --out var/eval/rmanuals

Corpus: `corpus.jsonl` with one row per manual of Debian's `r-doc-pdf` (R-intro, R-admin, R-exts, R-lang, R-data,
R-ints), `{"_id": "R-admin", "title": "R Installation and Administration", "file": "/abs/path/R-admin.pdf"}`. A row
has no text: the evaluation uploads the file as a document, so the PDF goes through the platform's own parser (page
by page, the outline as heading path), and a judgment `R-admin#page=23` is matched against a hit's document and its
1-based physical page number. The reference manuals (refman, fullrefman) are left out, being the help pages rather
than a manual, and so is R-FAQ: the questions were written from it, and its short answers would compete with the
manual pages that were judged.

The titles are those printed on each manual's title page: pdfTeX leaves the PDFs' own Title field empty.

Queries and judgments are not built here: they were written by hand and are frozen in
benchmarks/data/rmanuals-questions (see its README).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_SOURCE = Path("/usr/share/R/doc/manual")
MANUALS = {
    "R-intro": "An Introduction to R",
    "R-admin": "R Installation and Administration",
    "R-exts": "Writing R Extensions",
    "R-lang": "R Language Definition",
    "R-data": "R Data Import/Export",
    "R-ints": "R Internals",
}
_PDF_MAGIC = b"%PDF-"


def _is_pdf(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(len(_PDF_MAGIC)) == _PDF_MAGIC


def corpus_rows(source: Path) -> tuple[list[dict[str, str]], list[Path]]:
    """The corpus rows of the manuals found in `source`, and the manual files that are missing or not PDFs."""
    rows: list[dict[str, str]] = []
    unusable: list[Path] = []
    for doc_id, title in MANUALS.items():
        path = (source / f"{doc_id}.pdf").absolute()
        if not _is_pdf(path):
            unusable.append(path)
        else:
            rows.append({"_id": doc_id, "title": title, "file": str(path)})
    return rows, unusable


def write_corpus(out: Path, *, rows: list[dict[str, str]]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.jsonl"
    with corpus.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return corpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder of the manuals' PDFs")
    parser.add_argument("--out", type=Path, required=True, help="folder to write corpus.jsonl to")
    args = parser.parse_args(argv)

    rows, unusable = corpus_rows(args.source)
    if unusable:
        # A corpus without one of the manuals would leave its judged pages unreachable and lower every score.
        names = ", ".join(str(path) for path in unusable)
        print(f"not found or not a PDF: {names} (is r-doc-pdf installed?)", file=sys.stderr)
        return 2
    corpus = write_corpus(args.out, rows=rows)
    print(f"written: {len(rows)} manuals ({', '.join(row['_id'] for row in rows)}) in {corpus}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
