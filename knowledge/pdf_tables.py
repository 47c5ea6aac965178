"""Tables in a PDF page's text layer, found from where its characters stand (pdfium's character boxes).

A PDF has no tables, only characters at positions. The characters are grouped into lines by their height on the
page, across the whole page. A run of lines that share columns of white space (gutters) wider than a couple of
characters, each line with text on both sides of a gutter and the columns aligned, is a table; each line is a row,
the first one its header when it is set apart (another font, or words over numbers). A table at the head of a page
that goes on from the one at the foot of the page before keeps that one's header (`continued`). What looks like a
table but is not one stays text: prose (justified lines have wide word gaps, but not in the same place three lines
running), two text columns side by side (cells of long prose), contents pages (dot leaders), and code listings
(every cell in a typewriter font).

Conservative on purpose: a table that is missed is text as before, a paragraph wrongly cut into cells is worse.
Not found: a table whose cells wrap onto more lines (the rows from a wrapped one on stay text), a table inside one
column of a two-column page, and rotated text.
"""

from __future__ import annotations

import bisect
import ctypes
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pypdfium2 import PdfTextPage

# Two characters are on one line when their vertical centres are closer than this share of their height: a
# superscript (a footnote mark) is a line of its own.
LINE_TOLERANCE = 0.4
# A gap between characters wider than this many of the line's median character widths separates cells: justified
# prose stretches a space to about one character, the columns of a table stand further apart.
CELL_GAP_WIDTHS = 2.0
# A gutter that lines narrow to less than one character's width separates nothing.
MIN_GUTTER_WIDTHS = 1.0
# The rows of a table follow each other at one line's height or a little more (a table with padded cells, up to
# twice that); less is a sub- or superscript, more a list of separate paragraphs (a definition list).
ROW_PITCH = (0.8, 2.0)
MIN_ROWS = 3
# The cells of a column start, end or are centred within this many character widths of each other (the header,
# often centred over its column, is not counted).
ALIGN_WIDTHS = 1.5
# A column whose median cell is longer is prose, not a table's column (two text columns side by side); so is a
# column whose median cell has this many words or more, when two columns have them.
MAX_COLUMN_CHARS = 40
PROSE_WORDS = 5
# At most this many characters above a table (below it), not counting smaller print, are a running head (foot) or
# a page number: the table is at the head (foot) of its page, and may go on from (onto) the page before (after).
RUNNING_HEAD_CHARS = 80
# A table that goes on onto the next page ends in the bottom quarter of its page, and its rest starts in the top
# quarter of the next: a table that merely stands last on a short page is not continued by the next page's first.
PAGE_EDGE_SHARE = 0.25
_NUMBER = re.compile(r"[-+−±]?[$€£]?\d[\d.,]*\s?%?")
_LEADER = re.compile(r"(?:\.\s?){4,}")
_HYPHENATED = re.compile(r"[^\W\d_]-$")
_TYPEWRITER_FONT = re.compile(
    r"mono|courier|typewriter|consol|menlo|inconsolata|cmtt|lmtt|sftt|fixed", re.IGNORECASE
)
# Letters whose width differs most from the others in a proportional font: in a monospaced one they are as wide.
_NARROW_OR_WIDE = frozenset("ijltfrIJmwMW")


@dataclass(frozen=True)
class Table:
    """A table found on a page: its header row (None when its first row does not look like one) and the rows
    under it, each a list of cell texts."""

    header: list[str] | None
    rows: list[list[str]]
    # The white space between its columns, left to right: (left, right) in PDF units.
    gutters: tuple[tuple[float, float], ...] = field(default=(), repr=False)
    # Whether it stands at the head (foot) of its page, with no more than a running head (or foot, or footnotes
    # in smaller print) above (below) it.
    opens_page: bool = field(default=False, repr=False)
    ends_page: bool = field(default=False, repr=False)


@dataclass(frozen=True, slots=True)
class _Glyph:
    index: int  # in the page's character list
    char: str
    left: float
    right: float
    middle: float  # vertical centre, PDF units growing upwards
    height: float


@dataclass(frozen=True)
class _Line:
    glyphs: list[_Glyph]  # left to right
    middle: float
    height: float
    char_width: float  # median
    left: float
    right: float
    gaps: list[tuple[float, float]]  # the wide ones, left to right

    @classmethod
    def of(cls, glyphs: list[_Glyph]) -> _Line:
        glyphs.sort(key=lambda glyph: glyph.left)
        char_width = statistics.median(glyph.right - glyph.left for glyph in glyphs)
        gaps: list[tuple[float, float]] = []
        reach = glyphs[0].right
        for glyph in glyphs[1:]:
            if glyph.left - reach > CELL_GAP_WIDTHS * char_width:
                gaps.append((reach, glyph.left))
            reach = max(reach, glyph.right)
        return cls(
            glyphs=glyphs,
            middle=statistics.median(glyph.middle for glyph in glyphs),
            height=statistics.median(glyph.height for glyph in glyphs),
            char_width=char_width,
            left=glyphs[0].left,
            right=reach,
            gaps=gaps,
        )

    def free(self) -> list[tuple[float, float]]:
        """Where the line has no text: its wide gaps, and either side of it."""
        return [(float("-inf"), self.left), *self.gaps, (self.right, float("inf"))]


def page_tables(textpage: PdfTextPage) -> list[str | Table] | None:
    """The page's text and tables in the order of its content, or None when it has no table (its text is then
    read as before). Each text piece is the characters between two tables, as pdfium reads them."""
    import pypdfium2.raw as pdfium_c

    raw = textpage.raw
    count = pdfium_c.FPDFText_CountChars(raw)
    chars = list(textpage.get_text_range())
    if len(chars) != count:  # pdfium left a character out of its text, or added one: one character at a time
        chars = [_char(pdfium_c.FPDFText_GetUnicode(raw, index)) for index in range(count)]
    glyphs: list[_Glyph] = []
    box = pdfium_c.FS_RECTF()
    get_box = pdfium_c.FPDFText_GetLooseCharBox
    for index, char in enumerate(chars):
        if char.isspace() or not char.isprintable() or not get_box(raw, index, box):
            continue
        left, right, top, bottom = box.left, box.right, box.top, box.bottom
        if right > left and top > bottom:
            glyphs.append(_Glyph(index, char, left, right, (top + bottom) / 2, top - bottom))
    found = _find_tables(_lines(glyphs), chars, textpage)
    if not found:
        return None
    owner = {
        glyph.index: number
        for number, (_, lines) in enumerate(found)
        for line in lines
        for glyph in line.glyphs
    }
    pieces: list[str | Table] = []
    text: list[str] = []
    emitted: set[int] = set()
    for index, char in enumerate(chars):
        number = owner.get(index)
        if number is None:
            text.append(char)
        elif number not in emitted:
            emitted.add(number)
            pieces.extend(["".join(text), found[number][0]])
            text = []
    pieces.append("".join(text))
    return [piece for piece in pieces if not isinstance(piece, str) or piece.strip()]


def continued(before: Sequence[str | Table], pieces: list[str | Table]) -> list[str | Table]:
    """A page's pieces (`page_tables`), the table at its head given the header of the table at the foot of the
    page `before` when it goes on from that one: no header of its own, and the same columns (their gutters
    overlapping)."""
    last = next((p for p in reversed(before) if isinstance(p, Table) and p.ends_page), None)
    first = next((p for p in pieces if isinstance(p, Table) and p.opens_page), None)
    if last is None or first is None or last.header is None or first.header is not None:
        return pieces
    if len(first.gutters) != len(last.gutters) or any(
        min(right, other_right) <= max(left, other_left)
        for (left, right), (other_left, other_right) in zip(first.gutters, last.gutters, strict=True)
    ):
        return pieces
    joined = Table(header=last.header, rows=first.rows, gutters=first.gutters, ends_page=first.ends_page)
    return [joined if piece is first else piece for piece in pieces]


def _only_running_text(lines: list[_Line], *, height: float) -> bool:
    """Whether these lines are no more than a running head or foot (or a page number), leaving out lines in
    smaller print (footnotes)."""
    return sum(len(line.glyphs) for line in lines if line.height >= 0.9 * height) <= RUNNING_HEAD_CHARS


def _char(code: int) -> str:
    return chr(code) if 0 < code < 0x110000 and not 0xD800 <= code < 0xE000 else ""


def _lines(glyphs: list[_Glyph]) -> list[_Line]:
    """The page's glyphs grouped into lines by their vertical centre, top to bottom, across the whole page."""
    groups: list[list[_Glyph]] = []
    for glyph in sorted(glyphs, key=lambda glyph: -glyph.middle):
        first = groups[-1][0] if groups else None
        if first is not None and abs(first.middle - glyph.middle) <= LINE_TOLERANCE * min(
            first.height, glyph.height
        ):
            groups[-1].append(glyph)
        else:
            groups.append([glyph])
    return [_Line.of(group) for group in groups]


def _find_tables(
    lines: list[_Line], chars: list[str], textpage: PdfTextPage
) -> list[tuple[Table, list[_Line]]]:
    found: list[tuple[Table, list[_Line]]] = []
    _, bottom, _, top = textpage.page.get_bbox()
    edge = PAGE_EDGE_SHARE * (top - bottom)
    start = 0
    while start < len(lines):
        end, gutters = _run(lines, start)
        if gutters and end < len(lines) and _wraps_onto(lines[end - 1], lines[end], gutters):
            end -= 1  # its last row's text goes on below: that row, with its other line, stays text
        if end - start < MIN_ROWS:
            start += 1
            continue
        run = lines[start:end]
        rows = [_cells(line, gutters, chars) for line in run]
        if _is_table(run, rows, textpage):
            texts = [[text for text, _ in row] for row in rows]
            header = texts[0] if _has_header(rows, textpage) else None
            table = Table(
                header=header,
                rows=texts[1:] if header else texts,
                gutters=tuple(gutters),
                opens_page=run[0].middle > top - edge
                and _only_running_text(lines[:start], height=run[0].height),
                ends_page=run[-1].middle < bottom + edge
                and _only_running_text(lines[end:], height=run[-1].height),
            )
            found.append((table, run))
        start = end  # a run that is not a table is not searched again for a smaller one
    return found


def _run(lines: list[_Line], start: int) -> tuple[int, list[tuple[float, float]]]:
    """The end of the longest run of lines from `start` that share gutters, each with text on two sides of one at
    least, and those gutters."""
    first = lines[start]
    if first.gaps and _leader_free(first):
        gutters = first.gaps
    else:
        return start + 1, []
    end = start + 1
    while end < len(lines):
        line, previous = lines[end], lines[end - 1]
        pitch = previous.middle - line.middle
        height = max(line.height, previous.height)
        if not ROW_PITCH[0] * height <= pitch <= ROW_PITCH[1] * height or not _leader_free(line):
            break
        narrowed = _narrow(gutters, line, min_width=MIN_GUTTER_WIDTHS * first.char_width)
        if not narrowed or (end - start > 1 and len(narrowed) != len(gutters)):
            break  # a line across a column, or one that splits a column in two, is not a row of this table
        if any(_filled_cells(row, narrowed) < 2 for row in lines[start : end + 1]):
            break
        gutters = narrowed
        end += 1
    return end, gutters


def _wraps_onto(row: _Line, line: _Line, gutters: list[tuple[float, float]]) -> bool:
    """Whether `line` goes on with the text of a row's last cells: right under it, nothing in its first column."""
    pitch = row.middle - line.middle
    height = max(row.height, line.height)
    return ROW_PITCH[0] * height <= pitch <= ROW_PITCH[1] * height and line.left > gutters[0][0]


def _narrow(
    gutters: list[tuple[float, float]], line: _Line, *, min_width: float
) -> list[tuple[float, float]]:
    narrowed = []
    for left, right in gutters:
        for free_left, free_right in line.free():
            low, high = max(left, free_left), min(right, free_right)
            if high - low >= min_width:
                narrowed.append((low, high))
    return narrowed


def _leader_free(line: _Line) -> bool:
    """A line of a contents page or an index (dots leading to a page number) is not a row of a table."""
    return _LEADER.search("".join(glyph.char for glyph in line.glyphs)) is None


def _column(glyph: _Glyph, cuts: Sequence[float]) -> int:
    return bisect.bisect(cuts, (glyph.left + glyph.right) / 2)


def _filled_cells(line: _Line, gutters: list[tuple[float, float]]) -> int:
    cuts = [(left + right) / 2 for left, right in gutters]
    return len({_column(glyph, cuts) for glyph in line.glyphs})


def _cells(
    line: _Line, gutters: list[tuple[float, float]], chars: list[str]
) -> list[tuple[str, list[_Glyph]]]:
    """The line cut at the gutters: each cell's text and glyphs."""
    cuts = [(left + right) / 2 for left, right in gutters]
    columns: list[list[_Glyph]] = [[] for _ in range(len(gutters) + 1)]
    for glyph in line.glyphs:
        columns[_column(glyph, cuts)].append(glyph)
    cells = []
    for glyphs in columns:
        text = []
        for before, glyph in zip([None, *glyphs], glyphs, strict=False):
            if before is not None and _spaced(before, glyph, chars, line.char_width):
                text.append(" ")
            text.append(glyph.char)
        cells.append(("".join(text), glyphs))
    return cells


def _spaced(before: _Glyph, glyph: _Glyph, chars: list[str], char_width: float) -> bool:
    """Whether a space stands between two glyphs of a cell: one in the text layer (pdfium's or the file's), or a
    gap of a third of a character."""
    between = chars[before.index + 1 : glyph.index] if 0 < glyph.index - before.index <= 3 else []
    return any(char.isspace() for char in between) or glyph.left - before.right > 0.3 * char_width


def _is_table(
    run: list[_Line],
    rows: list[list[tuple[str, list[_Glyph]]]],
    textpage: PdfTextPage,
) -> bool:
    columns = list(zip(*rows, strict=True))
    char_width = statistics.median(line.char_width for line in run)
    prose_columns = 0
    for column in columns:
        texts = [text for text, _ in column if text]
        if not texts or statistics.median(len(text) for text in texts) > MAX_COLUMN_CHARS:
            return False
        prose_columns += statistics.median(len(text.split()) for text in texts) >= PROSE_WORDS
        body = [glyphs for _, glyphs in column[1:] if glyphs]
        if not body or not _aligned(body, tolerance=ALIGN_WIDTHS * char_width):
            return False
    if prose_columns >= 2:
        return False
    if sum(bool(_HYPHENATED.search(text)) for row in rows for text, _ in row) >= 2:
        return False  # words broken at the end of lines: prose
    cells = [glyphs for row in rows for _, glyphs in row if glyphs]
    return not _typewritten(cells, textpage) and not _rotated(cells, textpage)


def _aligned(cells: list[list[_Glyph]], *, tolerance: float) -> bool:
    lefts = [glyphs[0].left for glyphs in cells]
    rights = [max(glyph.right for glyph in glyphs) for glyphs in cells]
    centres = [(left + right) / 2 for left, right in zip(lefts, rights, strict=True)]
    return any(max(edges) - min(edges) <= tolerance for edges in (lefts, rights, centres))


def _typewritten(cells: list[list[_Glyph]], textpage: PdfTextPage) -> bool:
    """Whether every cell is in a monospaced font (a code listing, or a program's printed output), by the font's
    name or, where that says nothing, by its letters all being as wide."""
    import pypdfium2.raw as pdfium_c

    buffer = ctypes.create_string_buffer(128)
    flags = ctypes.c_int()
    monospaced = False
    for glyphs in cells:
        pdfium_c.FPDFText_GetFontInfo(textpage.raw, glyphs[0].index, buffer, len(buffer), flags)
        if _TYPEWRITER_FONT.search(buffer.value.decode("latin-1")):
            monospaced = True
            continue
        letters = [glyph for glyph in glyphs if glyph.char.isalnum()]
        widths = [glyph.right - glyph.left for glyph in letters]
        if widths and max(widths) > 1.2 * min(widths):
            return False  # a proportional font
        if any(glyph.char in _NARROW_OR_WIDE for glyph in letters):
            monospaced = True
    return monospaced


def _rotated(cells: list[list[_Glyph]], textpage: PdfTextPage) -> bool:
    import pypdfium2.raw as pdfium_c

    for glyphs in cells:
        angle = pdfium_c.FPDFText_GetCharAngle(textpage.raw, glyphs[0].index)  # radians, -1 when unknown
        if angle < 0 or 0.01 < angle < 2 * math.pi - 0.01:
            return True
    return False


def _has_header(rows: list[list[tuple[str, list[_Glyph]]]], textpage: PdfTextPage) -> bool:
    """Whether the first row is the table's header: set in another font than the rows under it (bold, most often),
    or words over a column of numbers. A list of terms and their meanings laid out in two columns has none, like an
    HTML table without header cells: its first term must not be repeated over every block of rows as a header."""
    import pypdfium2.raw as pdfium_c

    buffer = ctypes.create_string_buffer(128)
    flags = ctypes.c_int()

    def font(glyphs: list[_Glyph]) -> tuple[bytes, int]:
        pdfium_c.FPDFText_GetFontInfo(textpage.raw, glyphs[0].index, buffer, len(buffer), flags)
        return buffer.value, pdfium_c.FPDFText_GetFontWeight(textpage.raw, glyphs[0].index)

    header, body = rows[0], rows[1:]
    header_fonts = {font(glyphs) for _, glyphs in header if glyphs}
    if header_fonts.isdisjoint(font(glyphs) for row in body for _, glyphs in row if glyphs):
        return True
    for column, (name, _) in enumerate(header):
        values = [row[column][0] for row in body if row[column][0]]
        if (
            name
            and not _NUMBER.fullmatch(name)
            and len(values) >= 2
            and all(_NUMBER.fullmatch(v) for v in values)
        ):
            return True
    return False
