"""Build a BEIR-layout retrieval data set from the PostgreSQL manual's HTML pages and its back-of-book index.

    python scripts/build_pgdocs_beir.py --out var/eval/pgdocs-beir
    python scripts/build_pgdocs_beir.py --out var/eval/pgdocs-beir-500 --max-queries 500 --seed 1

Corpus: one document per page (`_id` is the file name). The text is Markdown rebuilt from the page's content: its
`<title>` as the `#` heading, its own headings below that, paragraphs, lists, tables as `a | b` rows and program
listings as fenced code. Navigation bars and tables of contents are left out, and so are pages that hold little
else (the index itself, part and chapter title pages): they would be matched for their headings alone. Markdown
rather than the raw HTML keeps the corpus readable by any BEIR tool, and the platform's Markdown parser turns the
`#` headings back into the same section paths its HTML parser would find.

Queries and judgments: every term of bookindex.html is a query, and the pages it links to (anchors dropped) are
its relevant documents, with score 1.

With --raw-html the corpus is instead every HTML page of the manual but the index itself (1,168 pages), each a
`file` row naming the page, so that the platform parses the pages as a user's upload of the manual would be
parsed: navigation bars, tables of contents and part title pages included. A subentry becomes "term subterm" ("CASCADE with DROP"), judged by its own
links only; "see" and "see also" cross references are skipped. Equal query texts are merged, and a query none of
whose pages made it into the corpus is dropped. --max-queries samples a deterministic subset (--seed).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bs4 import BeautifulSoup, NavigableString, Tag, XMLParsedAsHTMLWarning

DEFAULT_SOURCE = Path("/usr/share/doc/postgresql-doc-15/html")
INDEX_PAGE = "bookindex.html"
# A page with a table of contents and fewer words than this besides is a part or chapter title page: a few lines
# of introduction and links to the real pages. Pages without one are kept however short (a one-line reference page).
MIN_CONTENT_WORDS = 40

_DROP_CLASSES = {"navheader", "navfooter", "toc", "list-of-tables", "list-of-figures", "list-of-examples"}
_ADMONITIONS = {"note", "tip", "warning", "caution", "important"}
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCKS = {
    "p",
    "div",
    "dl",
    "dt",
    "dd",
    "ul",
    "ol",
    "blockquote",
    "figure",
    "section",
    "br",
    "hr",
    "caption",
}
# A body line that the Markdown reader would take for a heading or a code fence is escaped.
_MARKDOWN_SYNTAX = re.compile(r"^(\s*)(#{1,6}\s|```|~~~)")


@dataclass(frozen=True)
class Page:
    doc_id: str
    title: str
    text: str
    content_words: int
    has_toc: bool


@dataclass
class IndexEntry:
    path: tuple[str, ...]
    pages: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Query:
    query_id: str
    text: str
    relevant: tuple[str, ...]


def _soup(html: str) -> BeautifulSoup:
    with warnings.catch_warnings():
        # The manual is XHTML; the lenient HTML parser reads it as a browser would.
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        return BeautifulSoup(html, "lxml")


def _words(text: str) -> str:
    return " ".join(text.split())


class _MarkdownWriter:
    """Walks a page's body and collects Markdown blocks, counting the words that are not headings."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.blocks: list[str] = [f"# {title}"]
        self.content_words = 0
        self.has_toc = False
        self._inline: list[str] = []
        self._prefix = ""

    def flush(self) -> None:
        text = _words("".join(self._inline))
        self._inline.clear()
        if text:
            self._add(_MARKDOWN_SYNTAX.sub(r"\1\\\2", f"{self._prefix}{text}"))
            self._prefix = ""

    def _add(self, block: str, *, count: bool = True) -> None:
        if count:
            self.content_words += len(block.split())
        self.blocks.append(block)

    def walk(self, node: Tag) -> None:
        for child in node.children:
            if isinstance(child, NavigableString):
                if type(child) is NavigableString:  # not a comment, CDATA or doctype
                    self._inline.append(str(child))
                continue
            if not isinstance(child, Tag):
                continue
            classes = set(child.get("class") or [])
            name = child.name or ""
            if classes & _DROP_CLASSES or name in ("script", "style", "head"):
                self.has_toc = self.has_toc or "toc" in classes
                continue
            if name in _HEADINGS:
                self.flush()
                text = _words(child.get_text(" "))
                if text and text != self.title:
                    self._add(f"{'#' * max(2, _HEADINGS[name])} {text}", count=False)
            elif classes & _ADMONITIONS:
                self.flush()
                label = child.find(list(_HEADINGS))
                if label is not None:
                    self._prefix = f"{_words(label.get_text(' '))}: "
                    label.extract()
                self.walk(child)
                self.flush()
                self._prefix = ""
            elif name == "pre":
                self.flush()
                code = child.get_text().strip("\n")
                if code.strip():
                    fence = "~~~" if "```" in code else "```"
                    self._add(f"{fence}\n{code}\n{fence}")
            elif name == "table":
                self.flush()
                rows = []
                for row in child.find_all("tr"):
                    cells = [_words(cell.get_text(" ")) for cell in row.find_all(["td", "th"])]
                    line = " | ".join(cell for cell in cells if cell)
                    if line:
                        rows.append(_MARKDOWN_SYNTAX.sub(r"\1\\\2", line))
                if rows:
                    self._add("\n".join(rows))
            elif name == "li":
                self.flush()
                self._prefix = "- "
                self.walk(child)
                self.flush()
                self._prefix = ""
            elif name in _BLOCKS:
                self.flush()
                self.walk(child)
                self.flush()
            else:
                self.walk(child)


def page_to_markdown(html: str, *, doc_id: str) -> Page:
    """The page's title and its content as Markdown, with the number of words outside headings."""
    soup = _soup(html)
    title_tag = soup.find("title")
    title = _words(title_tag.get_text(" ")) if title_tag else doc_id
    writer = _MarkdownWriter(title)
    writer.walk(soup.body or soup)
    writer.flush()
    return Page(
        doc_id=doc_id,
        title=title,
        text="\n\n".join(writer.blocks),
        content_words=writer.content_words,
        has_toc=writer.has_toc,
    )


def read_pages(source: Path, *, min_words: int = MIN_CONTENT_WORDS) -> tuple[list[Page], list[str]]:
    """The content pages of the manual, and the names of those left out: the index, and pages that are only a
    table of contents (with at most a short introduction) or have no text besides their headings."""
    pages: list[Page] = []
    skipped: list[str] = []
    for path in sorted(source.glob("*.html")):
        if path.name == INDEX_PAGE:
            skipped.append(path.name)
            continue
        page = page_to_markdown(path.read_text(encoding="utf-8"), doc_id=path.name)
        if page.content_words == 0 or (page.has_toc and page.content_words < min_words):
            skipped.append(path.name)
        else:
            pages.append(page)
    return pages, skipped


def _term(dt: Tag) -> str:
    """The words of an index entry before its first link ("CASCADE, <a>…" gives "CASCADE")."""
    parts: list[str] = []
    for child in dt.children:
        if isinstance(child, Tag) and child.name == "a":
            break
        parts.append(child.get_text(" ") if isinstance(child, Tag) else str(child))
    return _words("".join(parts)).rstrip(", ").strip()


def _entries(dl: Tag, parent: tuple[str, ...]) -> Iterator[IndexEntry]:
    current: tuple[str, ...] | None = None
    for child in dl.find_all(["dt", "dd"], recursive=False):
        if child.name == "dt":
            term = _term(child)
            if not term or term.startswith("(see") or "(see " in term:
                current = None  # a cross reference to another entry, not a judgment
                continue
            current = (*parent, term)
            pages = [
                str(link["href"]).split("#", 1)[0]
                for link in child.find_all("a", href=True)
                if not str(link["href"]).startswith("#")
            ]
            yield IndexEntry(path=current, pages=[page for page in pages if page])
        elif current is not None:
            nested = child.find("dl")
            if nested is not None:
                yield from _entries(nested, current)


def read_index(html: str) -> list[IndexEntry]:
    """Every entry of the back-of-book index, in the order of the index, with the pages it points to."""
    soup = _soup(html)
    entries: list[IndexEntry] = []
    for division in soup.find_all("div", class_="indexdiv"):
        dl = division.find("dl", recursive=False)
        if dl is not None:
            entries.extend(_entries(dl, ()))
    return entries


def index_queries(entries: list[IndexEntry], *, corpus_ids: set[str]) -> tuple[list[Query], dict[str, int]]:
    """Queries from index entries: merged by text, judged by the pages in the corpus; also what was dropped."""
    merged: dict[str, tuple[str, list[str]]] = {}
    for entry in entries:
        text = _words(" ".join(entry.path))
        key = text.casefold()
        _, pages = merged.setdefault(key, (text, []))
        pages.extend(page for page in entry.pages if page not in pages)
    queries: list[Query] = []
    dropped = {"no_words": 0, "no_links": 0, "pages_not_in_corpus": 0}
    for text, pages in merged.values():
        relevant = tuple(page for page in pages if page in corpus_ids)
        if not any(character.isalnum() for character in text):
            dropped["no_words"] += 1  # "$", "::": nothing for a text search or an embedding to go on
        elif not pages:
            dropped["no_links"] += 1
        elif not relevant:
            dropped["pages_not_in_corpus"] += 1
        else:
            queries.append(Query(query_id=f"idx-{len(queries) + 1:05d}", text=text, relevant=relevant))
    return queries, dropped


def sample(queries: list[Query], *, max_queries: int | None, seed: int) -> list[Query]:
    """At most `max_queries` of `queries`, the same ones for the same seed, in their original order."""
    if max_queries is None or max_queries >= len(queries):
        return queries
    chosen = set(random.Random(seed).sample(range(len(queries)), max_queries))
    return [query for index, query in enumerate(queries) if index in chosen]


def write_dataset(out: Path, *, pages: list[Page], queries: list[Query], source: Path | None = None) -> None:
    """The BEIR files; with `source`, each page a `file` row naming the page in that folder."""
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as corpus:
        for page in pages:
            corpus.write(
                json.dumps(
                    {"_id": page.doc_id, "file": str(source / page.doc_id)}
                    if source is not None
                    else {"_id": page.doc_id, "title": page.title, "text": page.text},
                    ensure_ascii=False,
                )
                + "\n"
            )
    with (out / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for query in queries:
            handle.write(json.dumps({"_id": query.query_id, "text": query.text}, ensure_ascii=False) + "\n")
    with (out / "qrels" / "test.tsv").open("w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for query in queries:
            for doc_id in query.relevant:
                handle.write(f"{query.query_id}\t{doc_id}\t1\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the manual's HTML folder")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the data set to")
    parser.add_argument("--max-queries", type=int, default=None, help="sample this many queries")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument(
        "--min-words",
        type=int,
        default=MIN_CONTENT_WORDS,
        help="a page with a table of contents and fewer words besides is left out",
    )
    parser.add_argument(
        "--raw-html",
        action="store_true",
        help="the corpus is every page but the index, as the HTML files themselves (parsed by the platform)",
    )
    args = parser.parse_args(argv)

    index_path = args.source / INDEX_PAGE
    if not index_path.is_file():
        print(f"{index_path} not found (is postgresql-doc-15 installed?)", file=sys.stderr)
        return 2
    pages, skipped = read_pages(args.source, min_words=args.min_words)
    if args.raw_html:
        files = sorted(path for path in args.source.glob("*.html") if path.name != INDEX_PAGE)
        pages = [Page(doc_id=path.name, title="", text="", content_words=0, has_toc=False) for path in files]
        skipped = [INDEX_PAGE]
    entries = read_index(index_path.read_text(encoding="utf-8"))
    queries, dropped = index_queries(entries, corpus_ids={page.doc_id for page in pages})
    chosen = sample(queries, max_queries=args.max_queries, seed=args.seed)
    write_dataset(args.out, pages=pages, queries=chosen, source=args.source if args.raw_html else None)

    judgments = sum(len(query.relevant) for query in chosen)
    left_out = "the index" if args.raw_html else "the index and title or contents pages"
    print(f"corpus: {len(pages)} pages ({len(skipped)} left out: {left_out})")
    print(
        f"index: {len(entries)} entries -> {len(queries)} queries after merging equal texts "
        f"({dropped['no_words']} of symbols only, {dropped['no_links']} without links, "
        f"{dropped['pages_not_in_corpus']} whose pages are all left out)"
    )
    print(f"written: {len(chosen)} queries, {judgments} judgments (qrels/test.tsv) in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
