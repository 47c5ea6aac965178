"""Chunks are bounded in characters as well as in the model's tokens: the tokenizer reads a run of over 100
characters without a space as one token, so token budgets alone let one line become a chunk of megabytes."""

from knowledge import parsing
from knowledge.chunking import MAX_CHUNK_CHARS, chunk_document
from knowledge.embeddings import MINILM, get_embedder


def chunks_of(data: bytes, **options):
    embedder = get_embedder(MINILM)
    document = parsing.parse(data, filename="notes.txt")
    drafts = chunk_document(
        document,
        tokenizer=embedder.tokenizer,
        max_model_tokens=embedder.max_tokens,
        chunk_tokens=200,
        overlap_tokens=32,
        **options,
    )
    return document, drafts


def test_a_long_line_without_spaces_is_cut_hard_into_bounded_chunks_that_cover_it():
    line = "".join(chr(ord("a") + i % 26) for i in range(250_000))

    document, drafts = chunks_of(f"Intro sentence.\n\n{line}\n\nA closing sentence.".encode())

    assert max(len(d.text) for d in drafts) <= MAX_CHUNK_CHARS
    assert "".join(d.text for d in drafts[1:]) == line + "\n\nA closing sentence."  # all of it, once
    assert all(d.text == document.text[d.start : d.end] for d in drafts)
    assert drafts[0].text.startswith("Intro sentence.") and drafts[-1].text.endswith("A closing sentence.")


def test_long_runs_of_long_words_are_cut_between_words():
    words = [("x" * 150) + str(i) for i in range(3000)]  # each word one [UNK] token: 3000 tokens in 450 KB
    text = " ".join(words)

    _, drafts = chunks_of(text.encode())

    assert max(len(d.text) for d in drafts) <= MAX_CHUNK_CHARS
    known = set(words)
    assert all(word in known for d in drafts for word in d.text.split())
    assert {word for d in drafts for word in d.text.split()} == known


def test_ordinary_prose_chunks_as_it_did_without_the_character_bound():
    prose = "\n\n".join(
        " ".join(f"Sentence {p}.{s} explains how autovacuum keeps the tables lean." for s in range(12))
        for p in range(30)
    )

    _, bounded = chunks_of(prose.encode())
    _, unbounded = chunks_of(prose.encode(), max_chars=10**9)

    assert [(d.start, d.end) for d in bounded] == [(d.start, d.end) for d in unbounded]
    assert len(bounded) > 10


def test_a_small_character_bound_still_keeps_whole_sentences_and_overlap_within_it():
    prose = " ".join(f"Sentence number {i} is about replication slots." for i in range(200))

    _, drafts = chunks_of(prose.encode(), max_chars=300)

    assert max(len(d.text) for d in drafts) <= 300
    assert all(d.text.startswith("Sentence") and d.text.endswith("slots.") for d in drafts)
    assert drafts[1].start < drafts[0].end  # overlapping sentences survive the bound
