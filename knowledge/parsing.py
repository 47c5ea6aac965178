"""Turn the bytes of a file into text blocks that know their heading path and page.

The format is decided from the content (magic bytes, a zip's members, decodability, markup), the file name only
breaks ties between text formats (Markdown, CSV, TSV). Tables, whatever the format, become blocks of Markdown rows
that each start with the table's header row. Every failure is a `ParseError` whose message is shown to staff as the document's error.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import logging
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.errors import InvalidInput
from knowledge import ocr
from knowledge.ocr import OcrOptions

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from bs4 import Tag
    from PIL import Image
    from pptx.shapes.base import BaseShape
    from pypdfium2 import PdfDocument

PDF = "application/pdf"
HTML = "text/html"
MARKDOWN = "text/markdown"
TEXT = "text/plain"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
EPUB = "application/epub+zip"
CSV = "text/csv"
TSV = "text/tab-separated-values"
PNG = "image/png"
JPEG = "image/jpeg"
TIFF = "image/tiff"
WEBP = "image/webp"
GIF = "image/gif"
BMP = "image/bmp"
IMAGES = (PNG, JPEG, TIFF, WEBP, GIF, BMP)
SUPPORTED = (PDF, HTML, MARKDOWN, TEXT, DOCX, XLSX, PPTX, EPUB, CSV, TSV, *IMAGES)
# The file names a folder walk picks up (`manage.py ingest DIR`); a file named on its own is always read, by content.
FILE_SUFFIXES = frozenset(
    {".pdf", ".html", ".htm", ".xhtml", ".md", ".markdown", ".txt", ".text", ".rst"}
    | {".docx", ".xlsx", ".xlsm", ".pptx", ".epub", ".csv", ".tsv"}
    | {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".gif", ".bmp"}
)
# A PDF page whose text layer has fewer letters and digits than this, and that holds a picture, is a scan: it is
# OCRed. A typed page's running header alone has more; a scan's stamped page number or a scanner's few invisible
# words have fewer.
MIN_TEXT_LAYER_CHARS = 20

# DOCX, XLSX, PPTX and EPUB are zips; one whose members would inflate past this is treated as a bomb, not parsed.
# Counted as the members are inflated, never taken from the zip's headers (which can under-state it). Its XML parts
# have a bound of their own: the XML tree python-docx and python-pptx build takes about twenty times their size in
# memory (a workbook's sheets are exempt: they are streamed, never held as a tree).
MAX_ZIP_UNCOMPRESSED = 200 * 1024 * 1024
MAX_ZIP_XML = 48 * 1024 * 1024
# Spreadsheets and CSV are read a row at a time; what they may produce is bounded, counted as they are read, so that
# a sheet that claims a million columns or rows is refused instead of filling the worker's memory (a 100,000-row,
# 10-column CSV is a million cells).
MAX_SHEET_ROWS = 1_000_000
MAX_SHEET_CELLS = 5_000_000
MAX_SHEET_CHARS = 32 * 1024 * 1024
# Table rows go into blocks of at most this many characters, each starting with the table's header row: Markdown
# table text reads at about 2.6 characters per token (measured with all-MiniLM-L6-v2's tokenizer), so a block is
# 150-200 tokens and fits one chunk (chunking.CHUNK_TOKENS, 200) whole, header included.
TABLE_BLOCK_CHARS = 400
# The parsed tree of an HTML page takes about 2.5 KB of memory per element: a page with more is refused, counted
# before it is parsed (a long page of a manual has some thousands).
MAX_HTML_ELEMENTS = 250_000
_HTML_TAG_START = re.compile(r"<[A-Za-z]")


class ParseError(InvalidInput):
    """The document could not be read."""


class UnsupportedType(ParseError):
    """Unsupported type."""


@dataclass(frozen=True)
class Block:
    """A paragraph-like piece of text; offsets point into `ParsedDocument.text`."""

    text: str
    headings: tuple[str, ...]
    page: int | None
    start: int
    end: int
    # Rows of a table (Markdown, starting with its header row): the chunker keeps such a block whole.
    table: bool = False


@dataclass
class ParsedDocument:
    media_type: str
    title: str
    text: str
    blocks: list[Block]
    page_count: int | None = None


@dataclass
class _Builder:
    """Accumulates blocks and the full text they are offsets into."""

    parts: list[str] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    headings: list[str] = field(default_factory=list)
    length: int = 0

    def add_heading(self, text: str) -> None:
        self.headings.append(text)
        self._append(text)

    def add_block(
        self, text: str, headings: tuple[str, ...], page: int | None, *, table: bool = False
    ) -> None:
        text = text.strip()
        if not text:
            return
        start = self._append(text)
        self.blocks.append(
            Block(text=text, headings=headings, page=page, start=start, end=start + len(text), table=table)
        )

    def _append(self, text: str) -> int:
        if self.parts:
            self.parts.append("\n\n")
            self.length += 2
        start = self.length
        self.parts.append(text)
        self.length += len(text)
        return start

    def build(self, media_type: str, title: str, page_count: int | None = None) -> ParsedDocument:
        if not self.blocks and self.headings:
            # A page of headings alone (a chapter's title page) is still content: its headings are the text.
            self.parts, self.length, headings = [], 0, self.headings
            self.add_block("\n".join(headings), (), None)
        text = "".join(self.parts)
        if not self.blocks or not any(any(c.isalnum() for c in b.text) for b in self.blocks):
            raise ParseError(_no_text_message(media_type))
        return ParsedDocument(
            media_type=media_type, title=title, text=text, blocks=self.blocks, page_count=page_count
        )


def _no_text_message(media_type: str) -> str:
    if media_type == PDF:
        return "No extractable text: the PDF has no text layer, and OCR found no readable text on its pages."
    if media_type in IMAGES:
        return "No extractable text: OCR found no readable text in the image (only noise or a picture without words)."
    if media_type == HTML:
        return "No extractable text: the HTML page has no readable content (only scripts, styles or navigation?)."
    return "No extractable text: the file is empty or holds only whitespace."


def detect_media_type(data: bytes, filename: str = "") -> str:
    """The format of `data`, decided from its content; raises UnsupportedType."""
    if not data.strip():
        raise ParseError("The file is empty.")
    if data.startswith(b"%PDF-") or data[:1024].lstrip().startswith(b"%PDF-"):
        return PDF
    if data.startswith(b"PK\x03\x04"):
        return _zip_media_type(data)
    image = _image_media_type(data)
    if image:
        return image
    signature = _binary_signature(data)
    if signature:
        raise UnsupportedType(f"Unsupported type: {signature}.")
    text = decode_text(data)
    lowered_name = filename.lower()
    head = text[:4096].lstrip().lower()
    if head.startswith(("<!doctype html", "<html")) or re.search(
        r"<(html|body|head|article|main)[\s>]", head
    ):
        return HTML
    if lowered_name.endswith((".html", ".htm", ".xhtml")) and "<" in head:
        return HTML
    if lowered_name.endswith((".md", ".markdown", ".mdown", ".mkd")):
        return MARKDOWN
    if lowered_name.endswith(".csv"):
        return CSV
    if lowered_name.endswith((".tsv", ".tab")):
        return TSV
    if re.search(r"^#{1,6} \S", text[:20000], re.MULTILINE) and re.search(
        r"^(\s*[-*] |\s*\d+\. |```)", text, re.M
    ):
        return MARKDOWN
    return TEXT


# The member that names an Office Open XML package's kind, and the one an OpenDocument or EPUB file starts with.
_OOXML_MAIN_PARTS = (("word/document.xml", DOCX), ("xl/workbook.xml", XLSX), ("ppt/presentation.xml", PPTX))


def _zip_media_type(data: bytes) -> str:
    """DOCX, XLSX, PPTX or EPUB, from the members of the zip (never its name); raises UnsupportedType."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            mimetype = b""
            if "mimetype" in names:
                with archive.open("mimetype") as member:
                    mimetype = member.read(100).strip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError) as exc:
        raise UnsupportedType(f"Unsupported type: a damaged ZIP archive ({exc}).") from exc
    if mimetype == EPUB.encode():
        return EPUB
    if mimetype.startswith(b"application/vnd.oasis.opendocument"):
        raise UnsupportedType(
            "Unsupported type: an OpenDocument file (save it as .docx, .xlsx, .pptx or PDF and upload that)."
        )
    if "[Content_Types].xml" in names:
        for part, media_type in _OOXML_MAIN_PARTS:
            if part in names:
                return media_type
    raise UnsupportedType(
        "Unsupported type: a ZIP archive that is not a Word (.docx), Excel (.xlsx), PowerPoint (.pptx) or EPUB file."
    )


_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", PNG),
    (b"\xff\xd8\xff", JPEG),
    (b"GIF87a", GIF),
    (b"GIF89a", GIF),
    (b"II*\x00", TIFF),
    (b"MM\x00*", TIFF),
)


def _image_media_type(data: bytes) -> str | None:
    for magic, media_type in _IMAGE_SIGNATURES:
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    # "BM" alone starts many a text file; a BMP also has one of the known DIB header sizes at offset 14.
    if (
        data[:2] == b"BM"
        and len(data) > 26
        and int.from_bytes(data[14:18], "little") in (12, 40, 52, 56, 64, 108, 124)
    ):
        return BMP
    return None


_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\x7fELF", "an executable program"),
    (b"MZ", "a Windows executable"),
    (b"\xd0\xcf\x11\xe0", "a legacy Microsoft Office file (save it as .docx, .xlsx, .pptx or PDF)"),
    (b"ID3", "an audio file"),
    (b"OggS", "an audio or video file"),
    (b"SQLite format 3", "an SQLite database"),
)


def _binary_signature(data: bytes) -> str | None:
    for magic, description in _SIGNATURES:
        if data.startswith(magic):
            return description
    if data[4:8] in (b"ftyp", b"moov"):
        return "a video file"
    sample = data[:8192]
    if b"\x00" in sample and not sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        # UTF-16 without a byte-order mark has a NUL in every other byte; other NULs mean binary data.
        odd_nuls = sample[1::2].count(0)
        even_nuls = sample[0::2].count(0)
        if not (odd_nuls > len(sample) * 0.4 or even_nuls > len(sample) * 0.4):
            return "binary data, not text"
    return None


_PREFERRED_ENCODINGS = [
    "cp1252",
    "latin_1",
    "iso8859_15",
    "cp1251",
    "cp1250",
    "shift_jis",
    "cp932",
    "euc_jp",
    "gb18030",
    "gb2312",
    "big5",
    "euc_kr",
    "koi8_r",
    "cp1253",
    "cp1254",
    "cp1256",
    "cp1257",
]


def decode_text(data: bytes) -> str:
    """Decode text in whatever common encoding it is in; raises UnsupportedType for binary data."""
    for bom, encoding in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if data.startswith(bom):
            return _clean(data[len(bom) :].decode(encoding, errors="replace"))
    try:
        return _clean(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    results = from_bytes(data)
    matches = list(results)
    if not matches:
        raise UnsupportedType("Unsupported type: binary data, not text in any known encoding.")
    # Short texts often fit several single-byte code pages equally well; prefer the one most files are in.
    least_chaos = min(match.chaos for match in matches)
    close = [m for m in matches if m.chaos <= least_chaos + 0.1]
    close = close or [results.best() or matches[0]]
    best = min(
        close,
        key=lambda m: (
            _PREFERRED_ENCODINGS.index(m.encoding)
            if m.encoding in _PREFERRED_ENCODINGS
            else len(_PREFERRED_ENCODINGS)
        ),
    )
    text = str(best)
    controls = sum(1 for c in text[:20000] if unicodedata.category(c) == "Cc" and c not in "\n\r\t\f")
    if controls > len(text[:20000]) * 0.05:
        raise UnsupportedType("Unsupported type: binary data, not text.")
    return _clean(text)


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return unicodedata.normalize("NFC", text)


def parse(
    data: bytes,
    *,
    filename: str = "",
    on_page: Callable[[int, int], None] | None = None,
    ocr_options: OcrOptions | None = None,
) -> ParsedDocument:
    """Extract text blocks from `data`; raises ParseError (or UnsupportedType, ocr.OcrError) with a human-readable
    reason.

    `on_page(done, total)` is called while long (paginated) documents are read, to report progress. Images and the
    PDF pages without a text layer are OCRed as `ocr_options` say (Tesseract's defaults when None).
    """
    media_type = detect_media_type(data, filename)
    fallback_title = title_from_filename(filename)
    options = ocr_options or OcrOptions()
    if media_type == PDF:
        return parse_pdf(data, fallback_title=fallback_title, on_page=on_page, ocr_options=options)
    if media_type in IMAGES:
        return parse_image(
            data, media_type=media_type, fallback_title=fallback_title, on_page=on_page, ocr_options=options
        )
    if media_type == DOCX:
        return parse_docx(data, fallback_title=fallback_title)
    if media_type == XLSX:
        return parse_xlsx(data, fallback_title=fallback_title, on_page=on_page)
    if media_type == PPTX:
        return parse_pptx(data, fallback_title=fallback_title, on_page=on_page)
    if media_type == EPUB:
        return parse_epub(data, fallback_title=fallback_title, on_page=on_page)
    text = decode_text(data)
    if media_type in (CSV, TSV):
        return parse_csv(text, fallback_title=fallback_title, tabs=media_type == TSV)
    if media_type == HTML:
        return parse_html(text, fallback_title=fallback_title)
    if media_type == MARKDOWN:
        return parse_markdown(text, fallback_title=fallback_title)
    return parse_text(text, fallback_title=fallback_title)


def title_from_filename(filename: str) -> str:
    stem = filename.rsplit("/", 1)[-1].rsplit(".", 1)[0] if filename else ""
    return re.sub(r"[_-]+", " ", stem).strip() or "Untitled"


# --- Plain text and Markdown ---------------------------------------------------------------------------------------


def parse_text(text: str, *, fallback_title: str) -> ParsedDocument:
    builder = _Builder()
    for paragraph in re.split(r"\n\s*\n", text):
        builder.add_block(paragraph, (), None)
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    title = first_line if 0 < len(first_line) <= 120 else fallback_title
    return builder.build(TEXT, title)


_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def parse_markdown(text: str, *, fallback_title: str) -> ParsedDocument:
    builder = _Builder()
    headings: list[tuple[int, str]] = []
    paragraph: list[str] = []
    in_fence = False
    title = ""

    def flush() -> None:
        builder.add_block("\n".join(paragraph), tuple(h for _, h in headings), None)
        paragraph.clear()

    lines = text.split("\n")
    for index, line in enumerate(lines):
        if _FENCE.match(line):
            in_fence = not in_fence
            paragraph.append(line)
            if not in_fence:
                flush()
            continue
        if in_fence:
            paragraph.append(line)
            continue
        heading = _ATX.match(line)
        setext_level = _setext_level(lines, index)
        if heading or setext_level:
            flush()
            level, heading_text = (
                (len(heading.group(1)), heading.group(2)) if heading else (setext_level, line)
            )
            heading_text = _strip_inline_markdown(heading_text.strip())
            headings[:] = [(lvl, h) for lvl, h in headings if lvl < level] + [(level, heading_text)]
            title = title or (heading_text if level == 1 else "")
            builder.add_heading(heading_text)
            continue
        if re.fullmatch(r"\s*(=+|-+)\s*", line) and index > 0 and _setext_level(lines, index - 1):
            continue  # the underline of a setext heading
        if not line.strip():
            flush()
        else:
            paragraph.append(line)
    flush()
    return builder.build(MARKDOWN, title or fallback_title)


def _setext_level(lines: list[str], index: int) -> int:
    if index + 1 >= len(lines) or not lines[index].strip():
        return 0
    underline = lines[index + 1]
    if re.fullmatch(r"\s*=+\s*", underline):
        return 1
    if re.fullmatch(r"\s*-{2,}\s*", underline) and not lines[index].lstrip().startswith(("-", "*", "+")):
        return 2
    return 0


def _strip_inline_markdown(text: str) -> str:
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[*_`]+", "", text).strip()


# --- HTML ----------------------------------------------------------------------------------------------------------

_DROP_TAGS = (
    "script",
    "style",
    "noscript",
    "template",
    "svg",
    "canvas",
    "iframe",
    "form",
    "button",
    "select",
    "nav",
    "header",
    "footer",
    "aside",
    "head",
)
_DROP_CLASSES = re.compile(
    r"(^|[\s_-])(nav|navheader|navfooter|navbar|menu|sidebar|breadcrumbs?|footer|header|"
    r"toc|skip|cookie|banner|advert)([\s_-]|$)",
    re.IGNORECASE,
)
_BLOCK_TAGS = {
    "p",
    "div",
    "section",
    "article",
    "main",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "pre",
    "blockquote",
    "table",
    "thead",
    "tbody",
    "tfoot",
    "caption",
    "figure",
    "figcaption",
    "br",
    "hr",
    "address",
    "details",
    "summary",
}
# Admonitions carry a heading ("Note", "Warning") that labels the box, not a section of the document.
_ADMONITION_CLASSES = {"note", "tip", "warning", "caution", "important", "admonition", "callout"}
_HEADING_TAGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}


def parse_html(text: str, *, fallback_title: str) -> ParsedDocument:
    """Blocks of an HTML page; raises ParseError for a page too big or too deeply nested to read in bounded memory."""
    _check_html_elements(text, what="page")
    builder = _Builder()
    page_title, first_h1 = _html_into(builder, text)
    return builder.build(HTML, page_title or first_h1 or fallback_title)


def _check_html_elements(text: str, *, what: str) -> None:
    elements = sum(1 for _ in _HTML_TAG_START.finditer(text))
    if elements > MAX_HTML_ELEMENTS:
        raise ParseError(
            f"The {what} has {elements:,} elements; at most {MAX_HTML_ELEMENTS:,} are read "
            "(split it into smaller pages)."
        )


def _html_into(
    builder: _Builder, text: str, *, chrome: tuple[str, ...] = _DROP_TAGS, outer: tuple[str, ...] = ()
) -> tuple[str, str]:
    """Add the blocks of an HTML page to `builder`, under the heading path `outer`; its <title> and first <h1>.

    `chrome` are the elements dropped as navigation and decoration (an e-book's chapter keeps its <header>, which
    holds the chapter's heading). Raises ParseError for a page nested too deeply to read."""
    try:
        return _html_tree_into(builder, text, chrome=chrome, outer=outer)
    except RecursionError as exc:
        raise ParseError("The page's elements are nested too deeply to be read.") from exc


def _html_tree_into(
    builder: _Builder, text: str, *, chrome: tuple[str, ...], outer: tuple[str, ...]
) -> tuple[str, str]:
    import warnings

    from bs4 import BeautifulSoup, Comment, NavigableString, Tag, XMLParsedAsHTMLWarning

    with warnings.catch_warnings():
        # XHTML pages (DocBook output, for one) are HTML to a reader; the lenient HTML parser is the right one.
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(text, "lxml")
    title_tag = soup.find("title")
    page_title = " ".join(title_tag.get_text(" ").split()) if title_tag else ""
    for comment in soup.find_all(string=lambda s: isinstance(s, Comment)):
        comment.extract()
    for tag in soup.find_all(chrome):
        tag.decompose()
    for tag in soup.find_all(
        lambda tag: tag.get("role") in ("navigation", "banner", "contentinfo", "search")
    ):
        tag.decompose()
    for tag in soup.find_all(class_=_DROP_CLASSES):
        if tag.name not in ("body", "html", "main", "article"):
            tag.decompose()
    root = (
        soup.find("main")
        or soup.find(lambda tag: tag.get("role") == "main")
        or soup.find("article")
        or soup.body
        or soup
    )

    headings: list[tuple[int, str]] = [(0, heading) for heading in outer]
    buffer: list[str] = []
    first_h1 = ""
    label = ""  # an admonition's label ("Note"), put before the first paragraph inside it

    def flush() -> None:
        nonlocal label
        paragraph = " ".join("".join(buffer).split())
        buffer.clear()
        if paragraph:
            builder.add_block(
                f"{label}: {paragraph}" if label else paragraph, tuple(h for _, h in headings), None
            )
            label = ""

    def walk(node: Tag) -> None:
        nonlocal first_h1, label
        for child in node.children:
            if isinstance(child, NavigableString):
                buffer.append(str(child))
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name or ""
            if name == "table" and _is_data_table(child):
                flush()
                caption = child.find("caption")
                if caption is not None:
                    builder.add_block(
                        " ".join(caption.get_text(" ").split()), tuple(h for _, h in headings), None
                    )
                header, rows = _html_table_rows(child)
                _add_table(builder, rows, header=header, headings=tuple(h for _, h in headings), page=None)
            elif name == "tr":
                flush()
                cells = [" ".join(cell.get_text(" ").split()) for cell in child.find_all(["td", "th"])]
                builder.add_block(" | ".join(c for c in cells if c), tuple(h for _, h in headings), None)
            elif _ADMONITION_CLASSES.intersection(child.get("class") or []):
                flush()
                label_tag = child.find(list(_HEADING_TAGS))
                if label_tag is not None:
                    label = " ".join(label_tag.get_text(" ").split())
                    label_tag.decompose()
                walk(child)
                flush()
                label = ""
            elif name in _HEADING_TAGS:
                flush()
                level = _HEADING_TAGS[name]
                heading_text = " ".join(child.get_text(" ").split())
                if heading_text:
                    headings[:] = [(lvl, h) for lvl, h in headings if lvl < level] + [(level, heading_text)]
                    first_h1 = first_h1 or (heading_text if level == 1 else "")
                    builder.add_heading(heading_text)
            elif name == "pre":
                flush()
                builder.add_block(child.get_text(), tuple(h for _, h in headings), None)
            elif name in _BLOCK_TAGS:
                flush()
                walk(child)
                flush()
            else:
                walk(child)

    walk(root)
    flush()
    return page_title, first_h1


def _is_data_table(table: Tag) -> bool:
    """A table of data, not one that lays out a page: no table inside it, and more than one column."""
    if table.get("role") in ("presentation", "none") or table.find("table") is not None:
        return False
    return any(len(row.find_all(["td", "th"], recursive=False)) > 1 for row in table.find_all("tr"))


def _html_table_rows(table: Tag) -> tuple[list[str] | None, list[list[str]]]:
    """The header row (the <thead>'s, or a first row of <th> cells) and the other rows of an HTML table."""
    rows: list[list[str]] = []
    header: list[str] | None = None
    for index, row in enumerate(table.find_all("tr")):
        cells = row.find_all(["td", "th"], recursive=False)
        texts = [" ".join(cell.get_text(" ").split()) for cell in cells]
        in_head = row.find_parent("thead") is not None
        if index == 0 and (in_head or all(cell.name == "th" for cell in cells)):
            header = texts
        else:
            rows.append(texts)
    return header, rows


# --- PDF -----------------------------------------------------------------------------------------------------------


def parse_pdf(
    data: bytes,
    *,
    fallback_title: str,
    on_page: Callable[[int, int], None] | None = None,
    ocr_options: OcrOptions | None = None,
) -> ParsedDocument:
    """The PDF's text layer page by page, the tables it lays out as table blocks (`pdf_tables`); a page without one
    that holds a picture (a scan) is OCRed instead, so that a PDF mixing typed and scanned pages keeps both. More
    scanned pages than the OCR page cap fail the whole document before any is read: it is never half-indexed."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    from knowledge import pdf_tables

    options = ocr_options or OcrOptions()
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise ParseError(
                "The PDF is encrypted (password protected); remove the password and upload it again."
            ) from exc
        raise ParseError(f"The file is not a readable PDF (damaged or truncated): {exc}.") from exc
    try:
        page_count = len(pdf)
        outline = _pdf_outline(pdf)
        # First the text layers, which are cheap, to know which pages are scans before OCRing any of them.
        texts: list[str] = []
        scanned: list[int] = []
        # The text and tables of each page that has a table; the other pages are read from `texts`.
        with_tables: dict[int, list[str | pdf_tables.Table]] = {}
        for index in range(page_count):
            page = pdf[index]
            try:
                textpage = page.get_textpage()
                try:
                    page_text = textpage.get_text_bounded()
                    if sum(c.isalnum() for c in page_text) >= MIN_TEXT_LAYER_CHARS:
                        try:
                            pieces = pdf_tables.page_tables(textpage)
                        except Exception:
                            # Tables are a refinement: a page whose tables cannot be read is read as text, as before.
                            logger.warning("page %d: its tables could not be read", index + 1, exc_info=True)
                            pieces = None
                        if pieces is not None:
                            before = with_tables.get(index - 1)
                            with_tables[index] = pdf_tables.continued(before, pieces) if before else pieces
                    elif any(
                        True for _ in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=4)
                    ):
                        scanned.append(index)
                finally:
                    textpage.close()
            finally:
                page.close()
            texts.append(page_text)
        program = _ocr_program(options, scanned, page_count, texts)
        builder = _Builder()
        scanned_set = set(scanned) if program else set()
        for index in range(page_count):
            headings = outline(index)
            if index in scanned_set:
                image = _render_pdf_page(pdf, index)
                page_read = _read_page(image, program=program, options=options, page=index + 1)
                image.close()
                if not page_read.is_noise:
                    for paragraph in _ocr_paragraphs(page_read):
                        builder.add_block(paragraph, headings, index + 1)
            else:
                # A page with tables comes as its text and tables in order; any other page as its text alone.
                for piece in with_tables.pop(index, None) or [texts[index]]:
                    if isinstance(piece, str):
                        for paragraph in _pdf_paragraphs(piece):
                            builder.add_block(paragraph, headings, index + 1)
                    else:
                        _add_table(
                            builder, piece.rows, header=piece.header, headings=headings, page=index + 1
                        )
            texts[index] = ""
            if on_page is not None and (index in scanned_set or index % 10 == 9 or index == page_count - 1):
                on_page(index + 1, page_count)
        metadata_title = (pdf.get_metadata_value("Title") or "").strip()
    except pdfium.PdfiumError as exc:
        raise ParseError(f"The PDF could not be read past a damaged part: {exc}.") from exc
    finally:
        pdf.close()
    return builder.build(PDF, metadata_title or fallback_title, page_count=page_count)


def _ocr_program(options: OcrOptions, scanned: list[int], page_count: int, texts: list[str]) -> str:
    """The tesseract program for the scanned pages ("" when there are none, or OCR is off and the text layer has
    text of its own); raises ParseError when they cannot be OCRed."""
    if not scanned:
        return ""
    if not options.enabled:
        if any(sum(c.isalnum() for c in text) >= MIN_TEXT_LAYER_CHARS for text in texts):
            return ""  # OCR turned off: the typed pages are indexed, as they were before OCR existed
        raise ParseError(
            f"No extractable text: the PDF has no text layer (a scanned document?), and {options.disabled_reason}"
        )
    if len(scanned) > options.max_pages:
        raise ParseError(
            f"The PDF has {len(scanned)} scanned pages (of {page_count}) to OCR, more than the limit of "
            f"{options.max_pages} (KNOWLEDGE_OCR_MAX_PAGES); it was not indexed. Split it, or raise the limit."
        )
    try:
        return ocr.check_available(options)
    except ocr.OcrError as exc:
        raise ParseError(exc.message) from exc


def _read_page(image: Image.Image, *, program: str, options: OcrOptions, page: int) -> ocr.OcrPage:
    try:
        return ocr.read_page(ocr.prepare(image), program=program, options=options, page=page)
    except ocr.OcrError as exc:
        raise ParseError(exc.message) from exc


def _render_pdf_page(pdf: PdfDocument, index: int) -> Image.Image:
    """The page as a grey picture at OCR resolution (less for a page too large to hold at that)."""
    page = pdf[index]
    try:
        width, height = page.get_size()  # in points, 72 to the inch
        scale = ocr.RENDER_DPI / 72
        if width * height * scale * scale > ocr.MAX_PIXELS:
            scale = (ocr.MAX_PIXELS / (width * height)) ** 0.5
        bitmap = page.render(scale=scale, grayscale=True)
        try:
            picture: Image.Image = bitmap.to_pil().copy()
            return picture
        finally:
            bitmap.close()
    finally:
        page.close()


def _ocr_paragraphs(page: ocr.OcrPage) -> Iterator[str]:
    for lines in page.paragraphs:
        texts = [line.text.strip() for line in lines if line.text.strip()]
        if texts:
            yield _join_lines(texts)


def _join_lines(lines: list[str]) -> str:
    """Lines of a paragraph unwrapped, with a word hyphenated at a line's end joined again."""
    joined = lines[0]
    for line in lines[1:]:
        joined = joined[:-1] + line if re.search(r"[a-z]-$", joined) else f"{joined} {line}"
    return joined


# --- Images --------------------------------------------------------------------------------------------------------


def parse_image(
    data: bytes,
    *,
    media_type: str,
    fallback_title: str,
    on_page: Callable[[int, int], None] | None = None,
    ocr_options: OcrOptions | None = None,
) -> ParsedDocument:
    """The text of a picture, by OCR: every page of a multi-page TIFF, the first frame of a GIF or animated WebP."""
    import warnings

    from PIL import Image as PilImage
    from PIL import UnidentifiedImageError

    options = ocr_options or OcrOptions()
    if not options.enabled:
        raise ParseError(f"An image is read only by OCR, and {options.disabled_reason}")
    try:
        with warnings.catch_warnings():
            # A picture past Pillow's decompression-bomb bound is refused, not decoded into gigabytes.
            warnings.simplefilter("error", PilImage.DecompressionBombWarning)
            image = PilImage.open(io.BytesIO(data))
            width, height = image.size
            if width * height > 4 * ocr.MAX_PIXELS:
                raise ParseError(f"The image is too large to OCR ({width} x {height} pixels).")
            frames = getattr(image, "n_frames", 1) if media_type == TIFF else 1
            if frames > options.max_pages:
                raise ParseError(
                    f"The TIFF has {frames} pages to OCR, more than the limit of {options.max_pages} "
                    "(KNOWLEDGE_OCR_MAX_PAGES); it was not indexed. Split it, or raise the limit."
                )
            program = ocr.check_available(options)
            builder = _Builder()
            for index in range(frames):
                image.seek(index)
                frame = image.copy()
                page_read = _read_page(frame, program=program, options=options, page=index + 1)
                frame.close()
                if not page_read.is_noise:
                    for paragraph in _ocr_paragraphs(page_read):
                        builder.add_block(paragraph, (), index + 1 if frames > 1 else None)
                if on_page is not None:
                    on_page(index + 1, frames)
    except ocr.OcrError as exc:
        raise ParseError(exc.message) from exc
    except (
        UnidentifiedImageError,
        PilImage.DecompressionBombError,
        PilImage.DecompressionBombWarning,
    ) as exc:
        raise ParseError(
            f"The file is not a readable image (damaged, truncated or too large): {exc}."
        ) from exc
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        raise ParseError(f"The image could not be decoded (damaged or truncated): {exc}.") from exc
    return builder.build(media_type, fallback_title, page_count=frames if frames > 1 else None)


def _pdf_paragraphs(page_text: str) -> Iterator[str]:
    """Paragraphs of a PDF page: blank-line separated, with hyphenated line ends joined and lines unwrapped."""
    page_text = page_text.replace("\r\n", "\n").replace("\r", "\n").replace("\x02", "").replace("\ufffe", "")
    for raw in re.split(r"\n\s*\n", page_text):
        lines = [line.strip() for line in raw.split("\n") if line.strip()]
        if lines:
            yield _join_lines(lines)


def _pdf_outline(pdf: object) -> Callable[[int], tuple[str, ...]]:
    """A function from page index to the outline (bookmark) path that covers it; empty without an outline."""
    entries: list[tuple[int, int, str]] = []  # (page index, level, title) in document order
    try:
        for bookmark in pdf.get_toc(max_depth=6):  # type: ignore[attr-defined]
            destination = bookmark.get_dest()
            page_index = destination.get_index() if destination is not None else None
            title = " ".join((bookmark.get_title() or "").split())
            if page_index is not None and title:
                entries.append((page_index, bookmark.level + 1, title))
    except Exception:  # noqa: BLE001 - a broken outline only costs the heading paths, never the text
        entries = []
    entries.sort(key=lambda entry: entry[0])

    def headings_for(page_index: int) -> tuple[str, ...]:
        stack: list[tuple[int, str]] = []
        for start, level, title in entries:
            if start > page_index:
                break
            stack = [(lvl, t) for lvl, t in stack if lvl < level] + [(level, title)]
        return tuple(title for _, title in stack)

    return headings_for


# --- DOCX ----------------------------------------------------------------------------------------------------------


_ZIP_KINDS = {
    DOCX: "Word document",
    XLSX: "Excel workbook",
    PPTX: "PowerPoint presentation",
    EPUB: "EPUB book",
}


def _check_zip_sizes(data: bytes, *, media_type: str) -> None:
    """Inflate every member in 1 MB pieces, counting, and stop at the first bound passed: the headers' sizes are not
    trusted (a bomb can state small ones and fail only at the CRC, after inflating), nor held in memory."""
    kind = _ZIP_KINDS[media_type]
    bomb = f"The {kind} expands to more than {MAX_ZIP_UNCOMPRESSED // (1024 * 1024)} MB (a ZIP bomb?); it was not read."
    total = xml = 0
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            declared = sum(info.file_size for info in archive.infolist())
            if declared > MAX_ZIP_UNCOMPRESSED:
                raise ParseError(bomb)
            for info in archive.infolist():
                name = info.filename.lower()
                # A workbook's sheets are streamed by openpyxl, never held as a tree: only the total bounds them.
                is_xml = name.endswith((".xml", ".rels", ".opf", ".ncx")) and not (
                    media_type == XLSX and name.startswith("xl/worksheets/")
                )
                with archive.open(info) as member:
                    while piece := member.read(1024 * 1024):
                        total += len(piece)
                        xml += len(piece) if is_xml else 0
                        if total > MAX_ZIP_UNCOMPRESSED:
                            raise ParseError(bomb)
                        if xml > MAX_ZIP_XML:
                            raise ParseError(
                                f"The {kind}'s text and markup expand to more than "
                                f"{MAX_ZIP_XML // (1024 * 1024)} MB; it was not read (split it into smaller files)."
                            )
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError) as exc:
        raise ParseError(f"The {kind} could not be read: {exc}.") from exc


def parse_docx(data: bytes, *, fallback_title: str) -> ParsedDocument:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table
    from docx.text.paragraph import Paragraph
    from lxml.etree import XMLSyntaxError

    _check_zip_sizes(data, media_type=DOCX)
    try:
        document = docx.Document(io.BytesIO(data))
    except XMLSyntaxError as exc:
        if "too long" in str(exc):  # libxml2 refuses a text node of more than 10 MB
            raise ParseError(
                "The Word document holds more than 10 MB of text in one run; it was not read (split the text "
                "into paragraphs, or the file into smaller documents)."
            ) from exc
        raise ParseError(f"The Word document's XML is not valid: {exc}.") from exc
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ParseError(f"The Word document could not be read: {exc}.") from exc
    builder = _Builder()
    headings: list[tuple[int, str]] = []
    title = (document.core_properties.title or "").strip()
    body = document.element.body
    for element in body.iterchildren():
        tag = element.tag.rsplit("}", 1)[-1]
        if tag == "p":
            paragraph = Paragraph(element, document)
            style = (paragraph.style.name if paragraph.style is not None else "") or ""
            text = paragraph.text.strip()
            match = re.match(r"Heading (\d)", style)
            if (match or style == "Title") and text:
                level = int(match.group(1)) if match else 1
                headings[:] = [(lvl, h) for lvl, h in headings if lvl < level] + [(level, text)]
                title = title or text
                builder.add_heading(text)
            else:
                builder.add_block(text, tuple(h for _, h in headings), None)
        elif tag == "tbl":
            table = Table(element, document)
            rows = (_docx_row_cells(row) for row in table.rows)
            header = next(rows, None)
            _add_table(builder, rows, header=header, headings=tuple(h for _, h in headings), page=None)
    return builder.build(DOCX, title or fallback_title)


def _docx_row_cells(row: object) -> list[str]:
    """The texts of a Word table row, a merged cell once (python-docx repeats it for every grid column it spans)."""
    cells: list[str] = []
    previous = None
    for cell in row.cells:  # type: ignore[attr-defined]
        if previous is not None and cell._tc is previous:
            continue
        previous = cell._tc
        cells.append(cell.text)
    return cells


# --- Tables --------------------------------------------------------------------------------------------------------


def _cell_text(value: object) -> str:
    """A cell's value as one line of Markdown table text."""
    if value is None:
        return ""
    if isinstance(value, float):
        text = str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    elif isinstance(value, datetime.datetime):
        text = (
            value.date().isoformat() if value.time() == datetime.time() else value.isoformat(" ", "seconds")
        )
    elif isinstance(value, datetime.date | datetime.time):
        text = value.isoformat()
    else:
        text = str(value)
    return " ".join(text.split()).replace("|", "\\|")


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _add_table(
    builder: _Builder,
    rows: Iterable[Sequence[object]],
    *,
    header: Sequence[object] | None,
    headings: tuple[str, ...],
    page: int | None,
) -> None:
    """A table's rows as blocks of Markdown rows of about TABLE_BLOCK_CHARS, each block starting with the header row,
    so that a chunk of rows still says which column is which. A header too wide to repeat in every block (a sheet of
    many columns) makes each row a line of "column: value" pairs instead. Rows are consumed as they come: `rows` may
    be a stream."""
    names = [_cell_text(cell) for cell in header or ()]
    while names and not names[-1]:
        names.pop()
    header_lines = [_markdown_row(names), "|" + "---|" * len(names)] if names else []
    header_size = sum(len(line) + 1 for line in header_lines)
    records = header_size > TABLE_BLOCK_CHARS // 2
    block: list[list[str]] = []
    size = 0
    rows_seen = False

    def flush() -> None:
        nonlocal size
        if records:
            lines = [
                "; ".join(
                    f"{names[i] if i < len(names) and names[i] else f'Column {i + 1}'}: {value}"
                    for i, value in enumerate(cells)
                    if value
                )
                for cells in block
            ]
        else:
            width = max([len(names), *(len(cells) for cells in block)])
            lines = [_markdown_row(cells) for cells in block]
            if names:
                lines[:0] = [_markdown_row(names + [""] * (width - len(names))), "|" + "---|" * width]
        builder.add_block("\n".join(lines), headings, page, table=True)
        block.clear()
        size = 0

    room = TABLE_BLOCK_CHARS - (0 if records else header_size)
    for row in rows:
        cells = [_cell_text(cell) for cell in row]
        while cells and not cells[-1]:
            cells.pop()
        if not cells:
            continue
        rows_seen = True
        line_size = sum(len(cell) + 3 for cell in cells) + 2
        if block and size + line_size > room:
            flush()
        block.append(cells)
        size += line_size
    if block or (names and not rows_seen):
        flush()


# --- Spreadsheets and CSV ------------------------------------------------------------------------------------------


@dataclass
class _SheetBudget:
    """What the rows of a workbook or CSV file have used of MAX_SHEET_*; raises ParseError when one is passed."""

    rows: int = 0
    cells: int = 0
    chars: int = 0

    def take(self, rows: Iterable[Sequence[object]]) -> Iterator[Sequence[object]]:
        for row in rows:
            self.rows += 1
            self.cells += len(row)
            self.chars += sum(
                len(value) if isinstance(value, str) else 8 for value in row if value is not None
            )
            if self.rows > MAX_SHEET_ROWS:
                raise ParseError(
                    f"The spreadsheet has more than {MAX_SHEET_ROWS:,} rows; it was not read (split it into smaller files)."
                )
            if self.cells > MAX_SHEET_CELLS:
                raise ParseError(
                    f"The spreadsheet has more than {MAX_SHEET_CELLS:,} cells (counting the empty ones inside its "
                    "rows); it was not read (split it into smaller files)."
                )
            if self.chars > MAX_SHEET_CHARS:
                raise ParseError(
                    f"The spreadsheet holds more than {MAX_SHEET_CHARS // (1024 * 1024)} MB of text; it was not read "
                    "(split it into smaller files)."
                )
            yield row


def _add_sheet(
    builder: _Builder, rows: Iterator[Sequence[object]], *, name: str, headings: tuple[str, ...]
) -> None:
    """A sheet as a section: its first non-empty row is the header, repeated at the top of every block of rows."""
    header = next((row for row in rows if any(_cell_text(value) for value in row)), None)
    if header is None:
        return
    if name:
        builder.add_heading(name)
    _add_table(builder, rows, header=header, headings=headings, page=None)


def parse_xlsx(
    data: bytes, *, fallback_title: str, on_page: Callable[[int, int], None] | None = None
) -> ParsedDocument:
    """Each sheet of an Excel workbook a section of table blocks, read a row at a time (openpyxl's read-only mode);
    raises ParseError for a damaged workbook, a ZIP bomb or one over MAX_SHEET_*."""
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    _check_zip_sizes(data, media_type=XLSX)
    builder = _Builder()
    budget = _SheetBudget()
    try:
        # data_only: a formula cell reads as the value Excel last computed for it, not as its formula.
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            title = (workbook.properties.title or "").strip()
            sheets = workbook.worksheets
            for index, sheet in enumerate(sheets):
                # The dimension a sheet declares is not trusted (a claimed A1:XFD1048576 would pad every row to
                # 16,384 cells); without it a row is as wide as its last cell, and the budget counts that width.
                sheet.reset_dimensions()
                rows = budget.take(sheet.iter_rows(values_only=True))
                _add_sheet(builder, rows, name=sheet.title, headings=(sheet.title,))
                if on_page is not None:
                    on_page(index + 1, len(sheets))
        finally:
            workbook.close()
    except (
        InvalidFileException,
        KeyError,
        ValueError,
        TypeError,
        SyntaxError,
        zipfile.BadZipFile,
        OSError,
    ) as exc:
        raise ParseError(f"The Excel workbook could not be read: {exc}.") from exc
    return builder.build(XLSX, title or fallback_title)


def parse_csv(text: str, *, fallback_title: str, tabs: bool = False) -> ParsedDocument:
    """A CSV (or, with `tabs`, TSV) file as table blocks, its delimiter and quoting sniffed from its first lines;
    raises ParseError for a malformed file or one over MAX_SHEET_*."""
    dialect: type[csv.Dialect] | csv.Dialect = csv.excel_tab if tabs else csv.excel
    if not tabs:
        sample = text[:65536]
        sample = sample[: sample.rfind("\n")] if "\n" in sample else sample
        # One column, or too irregular to tell: the comma, as the name says.
        with contextlib.suppress(csv.Error):
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    builder = _Builder()
    try:
        rows = _SheetBudget().take(csv.reader(io.StringIO(text, newline=""), dialect))
        _add_sheet(builder, rows, name="", headings=())
    except csv.Error as exc:
        raise ParseError(f"The CSV file could not be read: {exc}.") from exc
    return builder.build(TSV if tabs else CSV, fallback_title)


# --- Slides --------------------------------------------------------------------------------------------------------


def parse_pptx(
    data: bytes, *, fallback_title: str, on_page: Callable[[int, int], None] | None = None
) -> ParsedDocument:
    """Each slide of a PowerPoint deck a section under its title: text frames, tables and speaker notes, with the
    slide's number as the page; raises ParseError for a damaged deck or a ZIP bomb."""
    import pptx
    from pptx.exc import PackageNotFoundError
    from pptx.shapes.autoshape import Shape
    from pptx.shapes.graphfrm import GraphicFrame

    _check_zip_sizes(data, media_type=PPTX)
    try:
        presentation = pptx.Presentation(io.BytesIO(data))
        builder = _Builder()
        title = (presentation.core_properties.title or "").strip()
        slides = list(presentation.slides)
        for number, slide in enumerate(slides, start=1):
            title_shape = slide.shapes.title
            slide_title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None else ""
            title = title or slide_title
            heading = slide_title or f"Slide {number}"
            builder.add_heading(heading)
            for shape in _slide_shapes(slide.shapes):
                if title_shape is not None and shape.shape_id == title_shape.shape_id:
                    continue
                if isinstance(shape, Shape) and shape.has_text_frame:
                    lines = (" ".join(p.text.split()) for p in shape.text_frame.paragraphs)
                    builder.add_block("\n".join(line for line in lines if line), (heading,), number)
                elif isinstance(shape, GraphicFrame) and shape.has_table:
                    table_rows = ([cell.text for cell in row.cells] for row in shape.table.rows)
                    header = next(table_rows, None)
                    _add_table(builder, table_rows, header=header, headings=(heading,), page=number)
            if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
                notes = slide.notes_slide.notes_text_frame.text.strip()
                if notes:
                    builder.add_block(f"Speaker notes: {notes}", (heading,), number)
            if on_page is not None and (number % 10 == 0 or number == len(slides)):
                on_page(number, len(slides))
    except (PackageNotFoundError, KeyError, ValueError, TypeError, SyntaxError, zipfile.BadZipFile) as exc:
        raise ParseError(f"The PowerPoint presentation could not be read: {exc}.") from exc
    return builder.build(PPTX, title or fallback_title, page_count=len(slides))


def _slide_shapes(shapes: Iterable[BaseShape]) -> Iterator[BaseShape]:
    """The shapes of a slide in order, those inside groups included."""
    from pptx.shapes.group import GroupShape

    for shape in shapes:
        if isinstance(shape, GroupShape):
            yield from _slide_shapes(shape.shapes)
        else:
            yield shape


# --- EPUB ----------------------------------------------------------------------------------------------------------

_OPF = "{http://www.idpf.org/2007/opf}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_CONTAINER = "{urn:oasis:names:tc:opendocument:xmlns:container}"
# A chapter keeps its <header> (where e-books put the chapter's heading); the rest of the page chrome still goes.
_EPUB_DROP_TAGS = tuple(tag for tag in _DROP_TAGS if tag != "header")


def parse_epub(
    data: bytes, *, fallback_title: str, on_page: Callable[[int, int], None] | None = None
) -> ParsedDocument:
    """The chapters of an EPUB book in reading order (its OPF spine) as sections, read by the HTML parser; raises
    ParseError for a damaged book or a ZIP bomb."""
    import posixpath

    from lxml import etree

    _check_zip_sizes(data, media_type=EPUB)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    builder = _Builder()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            container = etree.fromstring(archive.read("META-INF/container.xml"), parser)
            rootfile = container.find(f".//{_CONTAINER}rootfile")
            if rootfile is None or not rootfile.get("full-path"):
                raise ParseError(
                    "The EPUB book could not be read: its container names no package (OPF) file."
                )
            opf_path = rootfile.get("full-path", "")
            opf = etree.fromstring(archive.read(opf_path), parser)
            title_element = opf.find(f"{_OPF}metadata/{_DC}title")
            title = " ".join((title_element.text or "").split()) if title_element is not None else ""
            manifest = {
                item.get("id"): item
                for item in opf.iterfind(f"{_OPF}manifest/{_OPF}item")
                if item.get("id") and item.get("href")
            }
            chapters = [
                posixpath.normpath(posixpath.join(posixpath.dirname(opf_path), item.get("href", "")))
                for itemref in opf.iterfind(f"{_OPF}spine/{_OPF}itemref")
                if (item := manifest.get(itemref.get("idref"))) is not None
                and item.get("media-type") in ("application/xhtml+xml", "text/html")
                and "nav" not in (item.get("properties") or "").split()
            ]
            for number, path in enumerate(chapters, start=1):
                from urllib.parse import unquote

                chapter = decode_text(archive.read(unquote(path)))
                _check_html_elements(chapter, what=f"chapter {path}")
                _html_into(builder, chapter, chrome=_EPUB_DROP_TAGS)
                if on_page is not None and (number % 10 == 0 or number == len(chapters)):
                    on_page(number, len(chapters))
    except (KeyError, ValueError, etree.XMLSyntaxError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ParseError(f"The EPUB book could not be read: {exc}.") from exc
    return builder.build(EPUB, title or fallback_title)
