from chat.citations import check_citations


def test_valid_citations_are_kept_and_listed_in_order_of_appearance():
    checked = check_citations("Autovacuum runs each minute [2]. It can be tuned [1][2].", valid={1, 2})

    assert checked.text == "Autovacuum runs each minute [2]. It can be tuned [1][2]."
    assert checked.cited == [2, 1]
    assert checked.removed == []


def test_citations_of_sources_that_were_not_given_are_removed():
    checked = check_citations("Made up fact [7]. Real fact [1, 9]. Range [1-3].", valid={1, 2})

    assert checked.text == "Made up fact. Real fact [1]. Range [1][2]."
    assert checked.cited == [1, 2]
    assert checked.removed == [7, 9, 3]


def test_brackets_that_are_not_citations_are_left_alone():
    checked = check_citations("Use array[1] or [see below] in SQL.", valid={1})

    assert checked.text == "Use array[1] or [see below] in SQL."


def test_a_streamed_answer_is_filtered_piece_by_piece():
    from chat.citations import CitationFilter

    stream = CitationFilter(valid={1, 2})
    pieces = ["VACUUM frees space [", "1", "]. Invented [", "7] and array", "[3", "x] and [2,", " 9]."]

    out = "".join(stream.feed(piece) for piece in pieces) + stream.flush()

    assert out == "VACUUM frees space [1]. Invented  and array[3x] and [2]."
