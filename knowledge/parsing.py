"""Turn the bytes of a file into text blocks that know their heading path and page.

The format is decided from the content (magic bytes, decodability, markup), the file name only breaks ties
between text formats. Every failure is a `ParseError` whose message is shown to staff as the document's error.
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from core.errors import InvalidInput

PDF = "application/pdf"
HTML = "text/html"
MARKDOWN = "text/markdown"
TEXT = "text/plain"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
SUPPORTED = (PDF, HTML, MARKDOWN, TEXT, DOCX)

# A DOCX is a zip; one whose parts would inflate past this is treated as a bomb, not parsed. Counted as the parts
# are inflated, never taken from the zip's headers (which can under-state it). Its XML parts have a bound of their
# own: the XML tree python-docx builds takes about twenty times their size in memory.
MAX_DOCX_UNCOMPRESSED = 200 * 1024 * 1024
MAX_DOCX_XML = 48 * 1024 * 1024
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

    def add_block(self, text: str, headings: tuple[str, ...], page: int | None) -> None:
        text = text.strip()
        if not text:
            return
        start = self._append(text)
        self.blocks.append(Block(text=text, headings=headings, page=page, start=start, end=start + len(text)))

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
        return "No extractable text: the PDF has no text layer (a scanned document?). OCR is not supported."
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
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                if "word/document.xml" in archive.namelist():
                    return DOCX
        except zipfile.BadZipFile:
            pass
        raise UnsupportedType("Unsupported type: a ZIP archive that is not a Word (.docx) document.")
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
    if re.search(r"^#{1,6} \S", text[:20000], re.MULTILINE) and re.search(
        r"^(\s*[-*] |\s*\d+\. |```)", text, re.M
    ):
        return MARKDOWN
    return TEXT


_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\x7fELF", "an executable program"),
    (b"MZ", "a Windows executable"),
    (b"\xd0\xcf\x11\xe0", "a legacy Microsoft Office file (save it as .docx or PDF)"),
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
    data: bytes, *, filename: str = "", on_page: Callable[[int, int], None] | None = None
) -> ParsedDocument:
    """Extract text blocks from `data`; raises ParseError (or UnsupportedType) with a human-readable reason.

    `on_page(done, total)` is called while long (paginated) documents are read, to report progress.
    """
    media_type = detect_media_type(data, filename)
    fallback_title = title_from_filename(filename)
    if media_type == PDF:
        return parse_pdf(data, fallback_title=fallback_title, on_page=on_page)
    if media_type == DOCX:
        return parse_docx(data, fallback_title=fallback_title)
    text = decode_text(data)
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
    elements = sum(1 for _ in _HTML_TAG_START.finditer(text))
    if elements > MAX_HTML_ELEMENTS:
        raise ParseError(
            f"The page has {elements:,} elements; at most {MAX_HTML_ELEMENTS:,} are read (split it into smaller pages)."
        )
    try:
        return _parse_html_tree(text, fallback_title=fallback_title)
    except RecursionError as exc:
        raise ParseError("The page's elements are nested too deeply to be read.") from exc


def _parse_html_tree(text: str, *, fallback_title: str) -> ParsedDocument:
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
    for tag in soup.find_all(_DROP_TAGS):
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

    builder = _Builder()
    headings: list[tuple[int, str]] = []
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
            if name == "tr":
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
    return builder.build(HTML, page_title or first_h1 or fallback_title)


# --- PDF -----------------------------------------------------------------------------------------------------------


def parse_pdf(
    data: bytes, *, fallback_title: str, on_page: Callable[[int, int], None] | None = None
) -> ParsedDocument:
    import pypdfium2 as pdfium

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
        builder = _Builder()
        for index in range(page_count):
            page = pdf[index]
            try:
                textpage = page.get_textpage()
                page_text = textpage.get_text_bounded()
                textpage.close()
            finally:
                page.close()
            headings = outline(index)
            for paragraph in _pdf_paragraphs(page_text):
                builder.add_block(paragraph, headings, index + 1)
            if on_page is not None and (index % 10 == 9 or index == page_count - 1):
                on_page(index + 1, page_count)
        metadata_title = (pdf.get_metadata_value("Title") or "").strip()
    except pdfium.PdfiumError as exc:
        raise ParseError(f"The PDF could not be read past a damaged part: {exc}.") from exc
    finally:
        pdf.close()
    return builder.build(PDF, metadata_title or fallback_title, page_count=page_count)


def _pdf_paragraphs(page_text: str) -> Iterator[str]:
    """Paragraphs of a PDF page: blank-line separated, with hyphenated line ends joined and lines unwrapped."""
    page_text = page_text.replace("\r\n", "\n").replace("\r", "\n").replace("\x02", "").replace("\ufffe", "")
    for raw in re.split(r"\n\s*\n", page_text):
        lines = [line.strip() for line in raw.split("\n") if line.strip()]
        if not lines:
            continue
        joined = lines[0]
        for line in lines[1:]:
            joined = joined[:-1] + line if re.search(r"[a-z]-$", joined) else f"{joined} {line}"
        yield joined


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


def _check_docx_sizes(data: bytes) -> None:
    """Inflate every part in 1 MB pieces, counting, and stop at the first bound passed: the headers' sizes are not
    trusted (a bomb can state small ones and fail only at the CRC, after inflating), nor held in memory."""
    total = xml = 0
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            declared = sum(info.file_size for info in archive.infolist())
            if declared > MAX_DOCX_UNCOMPRESSED:
                raise ParseError(
                    "The Word document expands to more than 200 MB (a ZIP bomb?); it was not read."
                )
            for info in archive.infolist():
                is_xml = info.filename.lower().endswith((".xml", ".rels"))
                with archive.open(info) as member:
                    while piece := member.read(1024 * 1024):
                        total += len(piece)
                        xml += len(piece) if is_xml else 0
                        if total > MAX_DOCX_UNCOMPRESSED:
                            raise ParseError(
                                "The Word document expands to more than 200 MB (a ZIP bomb?); it was not read."
                            )
                        if xml > MAX_DOCX_XML:
                            raise ParseError(
                                f"The Word document's text and markup expand to more than "
                                f"{MAX_DOCX_XML // (1024 * 1024)} MB; it was not read (split it into smaller files)."
                            )
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError) as exc:
        raise ParseError(f"The Word document could not be read: {exc}.") from exc


def parse_docx(data: bytes, *, fallback_title: str) -> ParsedDocument:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    _check_docx_sizes(data)
    from lxml.etree import XMLSyntaxError

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
            for row in table.rows:
                cells = [cell.text.strip() for cell in row.cells]
                builder.add_block(" | ".join(c for c in cells if c), tuple(h for _, h in headings), None)
    return builder.build(DOCX, title or fallback_title)
