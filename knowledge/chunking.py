"""Split parsed documents into chunks that follow their structure and fit the embedding model.

Sections first (a chunk never spans two heading paths), then paragraphs, then sentences, then token windows for
the rare sentence longer than the budget. Sizes are measured with the embedding model's own tokenizer, and bounded
in characters too: the tokenizer reads a run of over 100 characters without a space as one token, so a long enough
line would otherwise make one chunk of megabytes. No chunk is longer than MAX_CHUNK_CHARS; a run longer than that is
cut at a space where it has one, hard where it has none. Chunks overlap by whole sentences, up to an overlap budget.
A block of table rows (which the parser starts with the table's header row) is kept whole when it fits, so that a
chunk of rows still says which column is which. The text that is embedded carries the document title and the
heading path, so that a chunk reads on its own ("Configuration › Autovacuum: ... it runs every minute").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import groupby

from knowledge.embeddings import Tokenizer
from knowledge.parsing import Block, ParsedDocument

SECTION_SEPARATOR = " › "
# Room for the model's two special tokens, [CLS] and [SEP].
SPECIAL_TOKENS = 2
MAX_PREFIX_TOKENS = 64
# About four times a 200-token chunk of prose; text cut at this size still reads as a passage.
MAX_CHUNK_CHARS = 4000
# Chunk size and overlap in the embedding model's tokens (all-MiniLM-L6-v2 reads 256, title and section included),
# measured, not deployment choices: the retrieval evaluations in benchmarks/README.md ("Retrieval quality") ran with
# them. Changing either changes every document's chunks: bump knowledge.services.indexing.INDEX_VERSION with it.
CHUNK_TOKENS = 200
OVERLAP_TOKENS = 32

_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9À-Ý])")


@dataclass(frozen=True)
class ChunkDraft:
    text: str
    embed_text: str
    section: str
    page: int | None
    start: int
    end: int
    token_count: int


@dataclass(frozen=True)
class _Unit:
    """A sentence (or a window of one) with its offsets into the document text."""

    start: int
    end: int
    tokens: int
    page: int | None
    paragraph_start: bool


def chunk_document(
    document: ParsedDocument,
    *,
    tokenizer: Tokenizer,
    max_model_tokens: int,
    chunk_tokens: int = CHUNK_TOKENS,
    overlap_tokens: int = OVERLAP_TOKENS,
    title: str | None = None,
    max_chars: int = MAX_CHUNK_CHARS,
) -> list[ChunkDraft]:
    """Chunks of `document`, in reading order; each fits `max_model_tokens` together with its title and section,
    and none is longer than `max_chars` characters."""
    title = title or document.title
    drafts: list[ChunkDraft] = []
    for headings, blocks in groupby(document.blocks, key=lambda block: block.headings):
        section = SECTION_SEPARATOR.join(headings)
        prefix = embedding_prefix(title=title, section=section, tokenizer=tokenizer)
        budget = max(16, min(chunk_tokens, max_model_tokens - SPECIAL_TOKENS - tokenizer.count(prefix) - 1))
        units = [
            unit for block in blocks for unit in _units(block, document.text, tokenizer, budget, max_chars)
        ]
        for window in _pack(units, budget, min(overlap_tokens, budget // 4), max_chars):
            start, end = window[0].start, window[-1].end
            text = document.text[start:end]
            drafts.append(
                ChunkDraft(
                    text=text,
                    embed_text=f"{prefix}\n{text}",
                    section=section,
                    page=window[0].page,
                    start=start,
                    end=end,
                    token_count=sum(unit.tokens for unit in window),
                )
            )
    return drafts


def embedding_text(*, title: str, section: str, text: str, tokenizer: Tokenizer) -> str:
    """What the model reads for a chunk: its title and heading path, then its text."""
    return f"{embedding_prefix(title=title, section=section, tokenizer=tokenizer)}\n{text}"


def embedding_prefix(*, title: str, section: str, tokenizer: Tokenizer) -> str:
    # The title is often the first heading too; say it once.
    path = section
    if section.startswith(title):
        path = section[len(title) :].lstrip(" ›")
    prefix = f"{title}: {path}" if path else title
    if tokenizer.count(prefix) > MAX_PREFIX_TOKENS:
        offsets = tokenizer.offsets(prefix)
        prefix = prefix[: offsets[MAX_PREFIX_TOKENS - 1][1]]
    return prefix


def _units(block: Block, text: str, tokenizer: Tokenizer, budget: int, max_chars: int) -> Iterator[_Unit]:
    first = True
    if block.table:
        # Table rows stay together with the header row their block starts with; a block too big for one chunk (a
        # row longer than a chunk) is cut between rows, not inside a cell's sentences.
        tokens = tokenizer.count(text[block.start : block.end])
        if tokens <= budget and block.end - block.start <= max_chars:
            yield _Unit(block.start, block.end, tokens, block.page, True)
            return
        sentences: Iterator[tuple[int, int]] = _line_spans(text, block.start, block.end)
    else:
        sentences = _sentence_spans(text, block.start, block.end)
    spans = (piece for span in sentences for piece in _character_pieces(text, *span, max_chars))
    for start, end in spans:
        tokens = tokenizer.count(text[start:end])
        if tokens <= budget:
            yield _Unit(start, end, tokens, block.page, first)
            first = False
            continue
        for window_start, window_end, window_tokens in _token_windows(text, start, end, tokenizer, budget):
            yield _Unit(window_start, window_end, window_tokens, block.page, first)
            first = False


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, by the same rules the chunker cuts by."""
    return [text[start:end] for start, end in _sentence_spans(text, 0, len(text))]


def _sentence_spans(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Sentence spans of text[start:end]; line breaks also end a sentence in code and lists."""
    position = start
    segment = text[start:end]
    for match in _SENTENCE_END.finditer(segment):
        cut = start + match.start()
        if cut > position:
            yield from _strip_span(text, position, cut)
        position = start + match.end()
    if position < end:
        yield from _strip_span(text, position, end)


def _line_spans(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    position = start
    while position < end:
        cut = text.find("\n", position, end)
        cut = end if cut < 0 else cut
        yield from _strip_span(text, position, cut)
        position = cut + 1


def _strip_span(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        yield start, end


def _character_pieces(text: str, start: int, end: int, limit: int) -> Iterator[tuple[int, int]]:
    """text[start:end] in pieces of at most `limit` characters, cut at the last space of a piece's second half where
    there is one (so words stay whole), hard where there is none. Done before tokenizing: a megabyte-long line is
    never handed to the tokenizer whole."""
    while end - start > limit:
        cut = start + limit
        space = max(text.rfind(" ", start + limit // 2, cut), text.rfind("\n", start + limit // 2, cut))
        if space > start:
            cut = space
        yield from _strip_span(text, start, cut)
        start = cut
    yield from _strip_span(text, start, end)


def _token_windows(
    text: str, start: int, end: int, tokenizer: Tokenizer, budget: int
) -> Iterator[tuple[int, int, int]]:
    """Cut an over-long sentence at token boundaries, preferring line breaks, into pieces of at most `budget`."""
    offsets = tokenizer.offsets(text[start:end])
    index = 0
    while index < len(offsets):
        last = min(index + budget, len(offsets)) - 1
        if last < len(offsets) - 1:
            # Prefer to end the window at a line break or a space in its last quarter.
            for candidate in range(last, index + (3 * budget) // 4, -1):
                gap = text[start + offsets[candidate][1] : start + offsets[candidate + 1][0]]
                if "\n" in gap:
                    last = candidate
                    break
        window_start = start + offsets[index][0]
        window_end = start + offsets[last][1]
        yield window_start, window_end, last - index + 1
        index = last + 1


def _pack(units: list[_Unit], budget: int, overlap: int, max_chars: int) -> Iterator[list[_Unit]]:
    """Greedy packing that prefers paragraph boundaries and repeats the last sentences as overlap; a window never
    spans more than `max_chars` characters of the document."""
    window: list[_Unit] = []
    tokens = 0
    fresh = 0  # units in the window that no earlier chunk holds
    for unit in units:
        breaks_paragraph = unit.paragraph_start and tokens >= budget // 2
        if window and (
            tokens + unit.tokens > budget
            or (breaks_paragraph and tokens + unit.tokens > budget * 0.9)
            or unit.end - window[0].start > max_chars
        ):
            yield window
            window, tokens = _overlap_tail(window, overlap, budget - unit.tokens)
            while window and unit.end - window[0].start > max_chars:
                tokens -= window.pop(0).tokens
            fresh = 0
        window.append(unit)
        tokens += unit.tokens
        fresh += 1
    if window and fresh:
        yield window


def _overlap_tail(window: list[_Unit], overlap: int, room: int) -> tuple[list[_Unit], int]:
    tail: list[_Unit] = []
    tokens = 0
    for unit in reversed(window):
        if tokens + unit.tokens > min(overlap, room):
            break
        tail.insert(0, unit)
        tokens += unit.tokens
    return tail, tokens
