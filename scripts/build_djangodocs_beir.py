"""Build a BEIR-layout retrieval data set of natural questions from the Django documentation and its FAQ.

    python scripts/build_djangodocs_beir.py --out var/eval/django-faq

Corpus: one document per HTML page of the documentation (`_id` is its path below html/, `topics/db/queries.html`),
named by its absolute path in `file` rather than copied or rewritten as text, so that the evaluation indexes the
page's own bytes through the upload path and the platform's HTML parser, as a user's upload would be. The title is
the page's `<title>` without the " — Django X.Y documentation" suffix. Left out are:

- the FAQ pages (faq/), whose questions are the queries: their own answers would be found instead of the pages the
  answers point to, which are what the set measures;
- the release notes (releases/): several hundred changelogs, most of them near-duplicate lists of fixes that name
  features in passing; they would crowd the results with pages a reader asking how to do something does not
  want, and no FAQ answer links to them;
- generated pages that are not documentation: genindex.html, py-modindex.html, search.html, and the _modules/
  (highlighted source code), _sources/, _static/ and _images/ folders;
- pages that are only a table of contents: a toctree and fewer than 40 words (MIN_CONTENT_WORDS) besides, outside
  headings (contents.html, ref/index.html, topics/db/index.html, ...). They would be matched for the titles of
  the pages they list alone. Pages without a toctree are kept however short.

Queries and judgments: every question of the FAQ pages, that is every heading below the page's title (h2 to h6)
written as a sentence, ending in "?", "." or "!" (a question, or a problem stated as one: "Some objects aren't
appearing in the admin."). That rule drops the headings that group questions ("Miscellaneous", "Problems running
django-admin") and bare labels ("macOS permissions"). The query text is the heading's, without its "¶"
permalink, whitespace collapsed and the typographic quotes Sphinx made of the source's ASCII ones turned back
("can’t" gives "can't"), as a user would type it. Its relevant documents (score 1) are the corpus pages that its
answer links to: the links in the heading's section outside its subsections, resolved relative to the FAQ page,
anchors and queries dropped, in the order of their first link. Links within the FAQ, to other sites (any URL with
a scheme, mailto: too) and to pages left out of the corpus are ignored; a question with no link left is dropped.
Questions are numbered faq-001... in the order of the FAQ file names, then of the headings in each file.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from bs4 import BeautifulSoup, Tag, XMLParsedAsHTMLWarning

DEFAULT_SOURCE = Path("/usr/share/doc/python-django-doc/html")
FAQ_FOLDER = "faq"
LEFT_OUT_FOLDERS = ("releases", "_modules", "_sources", "_static", "_images")
LEFT_OUT_PAGES = ("genindex.html", "py-modindex.html", "search.html")
# The same threshold as scripts/build_pgdocs_beir.py: a toctree with fewer words besides is a listing of pages,
# with at most a line of introduction (ref/index.html has 3, topics/db/index.html 37; howto/index.html, 74 words
# explaining what the how-to guides are, is kept).
MIN_CONTENT_WORDS = 40

_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_QUESTION_HEADINGS = ("h2", "h3", "h4", "h5", "h6")
_SENTENCE_END = ("?", ".", "!")
_SMART_QUOTES = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"'})
# Sphinx's title is "<page title> — <project> <version> documentation".
_TITLE_SUFFIX = re.compile(r"\s+—\s+[^—]*\bdocumentation$")


@dataclass(frozen=True)
class Page:
    doc_id: str
    title: str
    file: Path


@dataclass(frozen=True)
class Question:
    page: str  # the FAQ page it is on, relative to html/
    text: str
    # The pages its answer links to, relative to html/; links to the FAQ and to other sites are already out.
    links: tuple[str, ...]


@dataclass(frozen=True)
class Query:
    query_id: str
    text: str
    relevant: tuple[str, ...]


def _soup(html: str) -> BeautifulSoup:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        return BeautifulSoup(html, "lxml")


def _words(text: str) -> str:
    return " ".join(text.split())


def _content(soup: BeautifulSoup) -> Tag:
    # The Django theme puts the page in #yui-main and the sidebar (local contents, search box) beside it.
    main = soup.find(id="yui-main")
    return main if isinstance(main, Tag) else (soup.body or soup)


def _is_section(tag: Tag) -> bool:
    return tag.name == "section" or (tag.name == "div" and "section" in (tag.get("class") or []))


def clean_title(title: str) -> str:
    """A page's `<title>` without the documentation's name: "Making queries — Django 3.2.25 documentation" gives
    "Making queries"."""
    return _TITLE_SUFFIX.sub("", _words(title)) or _words(title)


def heading_text(heading: Tag) -> str:
    """A heading's words without its permalink, with ASCII quotes."""
    parts = [
        str(node) for node in heading.find_all(string=True) if node.find_parent(class_="headerlink") is None
    ]
    return _words("".join(parts).replace("¶", "")).translate(_SMART_QUOTES)


def is_question(text: str) -> bool:
    """Whether a FAQ heading is written as a question or a stated problem, not a label that groups questions."""
    return text.endswith(_SENTENCE_END)


def is_left_out(doc_id: str) -> bool:
    """Whether a page is out of the corpus by its path alone: the FAQ, release notes and generated pages."""
    top = doc_id.split("/", 1)[0]
    return top in (FAQ_FOLDER, *LEFT_OUT_FOLDERS) or doc_id in LEFT_OUT_PAGES


def content_words(soup: BeautifulSoup) -> tuple[int, bool]:
    """The number of words of a page outside headings and tables of contents, and whether it has a toctree."""
    content = _content(soup)
    has_toc = False
    for tag in content.find_all(class_="toctree-wrapper"):
        has_toc = True
        tag.decompose()
    for tag in content.find_all(_HEADINGS):
        tag.decompose()
    return len(content.get_text(" ").split()), has_toc


def read_pages(source: Path, *, min_words: int = MIN_CONTENT_WORDS) -> tuple[list[Page], list[str]]:
    """The corpus pages, sorted by path, and the paths of the HTML pages left out."""
    pages: list[Page] = []
    left_out: list[str] = []
    for path in sorted(source.rglob("*.html")):
        doc_id = path.relative_to(source).as_posix()
        if is_left_out(doc_id):
            left_out.append(doc_id)
            continue
        soup = _soup(path.read_text(encoding="utf-8"))
        title_tag = soup.find("title")
        title = clean_title(title_tag.get_text(" ")) if title_tag else doc_id
        words, has_toc = content_words(soup)
        if has_toc and words < min_words:
            left_out.append(doc_id)
        else:
            pages.append(Page(doc_id=doc_id, title=title, file=path.resolve()))
    return pages, left_out


def resolve_link(href: str, *, page: str) -> str | None:
    """The page below html/ that a link on `page` points to, or None for another site or a link within the page."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or not parts.path:
        return None
    target = posixpath.normpath(posixpath.join(posixpath.dirname(page), unquote(parts.path)))
    return None if target.startswith("../") or target == ".." else target


def read_questions(html: str, *, page: str) -> tuple[list[Question], list[str]]:
    """The questions of a FAQ page in document order, each with the pages its answer links to outside the FAQ,
    and the headings that are not questions."""
    content = _content(_soup(html))
    questions: list[Question] = []
    not_questions: list[str] = []
    for heading in content.find_all(_QUESTION_HEADINGS):
        section = heading.parent
        if not isinstance(section, Tag) or not _is_section(section):
            continue  # a heading inside a note or a sidebar, not one of the page's sections
        text = heading_text(heading)
        if not is_question(text):
            not_questions.append(text)
            continue
        links: list[str] = []
        for link in section.find_all("a", href=True):
            if "headerlink" in (link.get("class") or []) or link.find_parent(_is_section) is not section:
                continue  # a permalink, or a link in a subsection (another question's answer)
            target = resolve_link(str(link["href"]), page=page)
            if target and not target.startswith(f"{FAQ_FOLDER}/") and target not in links:
                links.append(target)
        questions.append(Question(page=page, text=text, links=tuple(links)))
    return questions, not_questions


def faq_queries(questions: list[Question], *, corpus_ids: set[str]) -> tuple[list[Query], list[Question]]:
    """Queries from questions, judged by the linked pages that are in the corpus; also the questions dropped."""
    queries: list[Query] = []
    dropped: list[Question] = []
    for question in questions:
        relevant = tuple(target for target in question.links if target in corpus_ids)
        if relevant:
            queries.append(
                Query(query_id=f"faq-{len(queries) + 1:03d}", text=question.text, relevant=relevant)
            )
        else:
            dropped.append(question)
    return queries, dropped


def write_dataset(out: Path, *, pages: list[Page], queries: list[Query]) -> None:
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as corpus:
        for page in pages:
            row = {"_id": page.doc_id, "title": page.title, "file": str(page.file)}
            corpus.write(json.dumps(row, ensure_ascii=False) + "\n")
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
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the documentation's HTML folder")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the data set to")
    parser.add_argument(
        "--min-words",
        type=int,
        default=MIN_CONTENT_WORDS,
        help="a page with a toctree and fewer words besides is left out",
    )
    args = parser.parse_args(argv)

    faq_pages = sorted((args.source / FAQ_FOLDER).glob("*.html"))
    if not faq_pages:
        print(
            f"no FAQ pages in {args.source / FAQ_FOLDER} (is python-django-doc installed?)", file=sys.stderr
        )
        return 2
    pages, left_out = read_pages(args.source, min_words=args.min_words)
    questions: list[Question] = []
    not_questions: list[str] = []
    for path in faq_pages:
        found, labels = read_questions(
            path.read_text(encoding="utf-8"), page=path.relative_to(args.source).as_posix()
        )
        questions.extend(found)
        not_questions.extend(labels)
    queries, dropped = faq_queries(questions, corpus_ids={page.doc_id for page in pages})
    write_dataset(args.out, pages=pages, queries=queries)

    by_path = sum(is_left_out(doc_id) for doc_id in left_out)
    print(
        f"corpus: {len(pages)} pages ({len(left_out)} left out: {by_path} FAQ, release notes and generated "
        f"pages, {len(left_out) - by_path} tables of contents)"
    )
    print(
        f"faq: {len(faq_pages)} pages, {len(questions) + len(not_questions)} headings below the titles -> "
        f"{len(questions)} questions ({len(not_questions)} headings that are not sentences left out: "
        f"{'; '.join(not_questions) or 'none'})"
    )
    unlinked = sum(not question.links for question in dropped)
    print(
        f"dropped: {len(dropped)} questions whose answer links to no corpus page ({unlinked} link to no "
        f"documentation page at all, {len(dropped) - unlinked} only to pages left out)"
    )
    judgments = sum(len(query.relevant) for query in queries)
    print(f"written: {len(queries)} queries, {judgments} judgments (qrels/test.tsv) in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
