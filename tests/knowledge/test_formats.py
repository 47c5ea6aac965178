"""Spreadsheets, CSV, slides, e-books and tables (issue 17): real files built in the test, parsed, chunked so that
a chunk of table rows still carries its header row, and ingested to READY or FAILED with a reason."""

import io
import textwrap
import zipfile

import pytest
from django.core.management import call_command

from knowledge import parsing, search, services
from knowledge.chunking import chunk_document
from knowledge.embeddings import HASHING, MINILM, get_embedder
from knowledge.models import Document
from tests import documents
from tests.factories import CollectionFactory

HEADER = "| Region | Product | Units | Revenue |"


def sales_rows(count: int) -> list[list[object]]:
    return [[f"Region {i % 7}", f"Widget model {i}", i * 3, i * 12.5] for i in range(count)]


def chunks(parsed: parsing.ParsedDocument):
    embedder = get_embedder(MINILM)
    return chunk_document(
        parsed,
        tokenizer=embedder.tokenizer,
        max_model_tokens=embedder.max_tokens,
        chunk_tokens=200,
        overlap_tokens=32,
    )


# --- Sniffing ------------------------------------------------------------------------------------------------------


def test_office_and_epub_files_are_told_apart_by_their_members_not_their_names():
    xlsx = documents.xlsx_bytes({"S": [["a"], [1]]})
    pptx = documents.pptx_bytes([{"title": "T"}])
    epub = documents.epub_bytes("B", [("C", "<p>x</p>")])

    assert parsing.detect_media_type(xlsx, "report.docx") == parsing.XLSX
    assert parsing.detect_media_type(pptx, "deck.xlsx") == parsing.PPTX
    assert parsing.detect_media_type(epub, "book.zip") == parsing.EPUB
    assert parsing.detect_media_type(b"a,b\n1,2\n", "table.csv") == parsing.CSV
    assert parsing.detect_media_type(b"a\tb\n1\t2\n", "table.tsv") == parsing.TSV
    assert parsing.detect_media_type(b"a,b\n1,2\n", "table.txt") == parsing.TEXT


def plain_zip(members: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "name", "reason"),
    [
        (plain_zip({"notes.txt": "hello"}), "sheet.xlsx", "a ZIP archive that is not a Word"),
        # The right member name without the package's content types is not an Office file.
        (plain_zip({"xl/workbook.xml": "<workbook/>"}), "sheet.xlsx", "a ZIP archive that is not"),
        (plain_zip({"mimetype": "application/vnd.oasis.opendocument.text"}), "a.odt", "an OpenDocument file"),
        (b"PK\x03\x04" + b"\x01" * 200, "broken.pptx", "Unsupported type"),
        (b"Name,Age\nAlice,34\n", "not-really.xlsx", None),
    ],
)
def test_a_file_that_only_claims_to_be_an_office_file_is_read_for_what_it_is(data, name, reason):
    if reason is None:
        assert parsing.parse(data, filename=name).media_type == parsing.TEXT
        return
    with pytest.raises(parsing.UnsupportedType, match=reason):
        parsing.parse(data, filename=name)


@pytest.mark.parametrize(
    ("main_part", "kind"),
    [
        ("xl/workbook.xml", "Excel workbook"),
        ("ppt/presentation.xml", "PowerPoint presentation"),
        ("mimetype", "EPUB book"),
    ],
)
def test_a_zip_bomb_in_any_zip_format_is_refused_without_handing_it_to_a_reader(main_part, kind):
    data = documents.zip_bomb_bytes(main_part)

    with pytest.raises(
        parsing.ParseError, match=f"The {kind} expands to more than 200 MB \\(a ZIP bomb\\?\\)"
    ):
        parsing.parse(data, filename="bomb")


# --- Spreadsheets and CSV ------------------------------------------------------------------------------------------


def test_each_sheet_is_a_section_of_markdown_rows_under_its_header():
    data = documents.xlsx_bytes(
        {
            "Sales": [["Region", "Product", "Units", "Revenue"], *sales_rows(3)],
            "Blank": [],
            "Staff": [[None], ["Name", "Started"], ["Alice | Smith", "2021-03-04"]],
        },
        title="Quarterly figures",
    )

    parsed = parsing.parse(data, filename="q3.xlsx")

    assert parsed.media_type == parsing.XLSX
    assert parsed.title == "Quarterly figures"
    assert [block.headings for block in parsed.blocks] == [("Sales",), ("Staff",)]
    assert parsed.blocks[0].text.splitlines() == [
        HEADER,
        "|---|---|---|---|",
        "| Region 0 | Widget model 0 | 0 | 0 |",
        "| Region 1 | Widget model 1 | 3 | 12.5 |",
        "| Region 2 | Widget model 2 | 6 | 25 |",
    ]
    # A leading empty row is skipped, and a pipe inside a cell does not open a column.
    assert parsed.blocks[1].text.splitlines()[0] == "| Name | Started |"
    assert parsed.blocks[1].text.splitlines()[2] == "| Alice \\| Smith | 2021-03-04 |"
    assert parsed.blocks[0].table


def test_every_chunk_of_a_long_sheet_starts_with_its_header_row():
    data = documents.xlsx_bytes({"Sales": [["Region", "Product", "Units", "Revenue"], *sales_rows(500)]})

    drafts = chunks(parsing.parse(data, filename="sales.xlsx"))

    assert len(drafts) > 10
    assert all(draft.text.startswith(HEADER) for draft in drafts)
    assert all(draft.section == "Sales" for draft in drafts)
    rows = [line for draft in drafts for line in draft.text.splitlines()[2:]]
    assert rows == [f"| Region {i % 7} | Widget model {i} | {i * 3} | {i * 12.5:g} |" for i in range(500)]


def test_a_sheet_too_wide_to_repeat_its_header_says_each_cells_column_instead():
    header = [f"Measurement {i}" for i in range(40)]
    data = documents.xlsx_bytes({"Wide": [header, list(range(40)), list(range(100, 140))]})

    parsed = parsing.parse(data, filename="wide.xlsx")

    lines = [line for block in parsed.blocks for line in block.text.splitlines()]
    assert lines[0].startswith("Measurement 0: 0; Measurement 1: 1; ")
    assert lines[1].endswith("Measurement 39: 139")


def test_a_sheet_that_declares_the_whole_grid_is_read_by_its_cells_not_its_declared_size(monkeypatch):
    # Padded to the declared 16,384 columns, its two rows alone would pass this bound.
    monkeypatch.setattr(parsing, "MAX_SHEET_CELLS", 1000)
    data = documents.xlsx_bytes({"Sheet": [["Key", "Value"], ["a", 1]]})
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            content = source.read(info)
            if info.filename.startswith("xl/worksheets/"):
                content = content.replace(b"<sheetData>", b'<dimension ref="A1:XFD1048576"/><sheetData>', 1)
                assert b"XFD1048576" in content
            target.writestr(info, content)

    parsed = parsing.parse(buffer.getvalue(), filename="claims-everything.xlsx")

    assert parsed.blocks[0].text.splitlines() == ["| Key | Value |", "|---|---|", "| a | 1 |"]


@pytest.mark.parametrize(
    ("limit", "value", "reason"),
    [
        ("MAX_SHEET_ROWS", 100, "more than 100 rows"),
        ("MAX_SHEET_CELLS", 300, "more than 300 cells"),
    ],
)
def test_a_sheet_over_the_limits_is_refused_with_the_limit(monkeypatch, limit, value, reason):
    monkeypatch.setattr(parsing, limit, value)
    data = documents.xlsx_bytes({"Sales": [["Region", "Product", "Units", "Revenue"], *sales_rows(150)]})

    with pytest.raises(parsing.ParseError, match=reason):
        parsing.parse(data, filename="big.xlsx")


def test_a_row_far_below_the_others_counts_every_row_between_against_the_limit(monkeypatch):
    import openpyxl

    monkeypatch.setattr(parsing, "MAX_SHEET_ROWS", 1000)
    workbook = openpyxl.Workbook()
    workbook.active["A1"] = "Key"
    workbook.active["A1000000"] = "far away"
    buffer = io.BytesIO()
    workbook.save(buffer)

    with pytest.raises(parsing.ParseError, match="more than 1,000 rows"):
        parsing.parse(buffer.getvalue(), filename="sparse.xlsx")


def test_csv_dialect_and_encoding_are_sniffed():
    data = "Ville;Population;Pays\nZürich;421878;Suisse\nGenève;203856;Suisse\n".encode("cp1252")

    parsed = parsing.parse(data, filename="villes.csv")

    assert parsed.media_type == parsing.CSV
    assert parsed.title == "villes"
    assert parsed.blocks[0].text.splitlines() == [
        "| Ville | Population | Pays |",
        "|---|---|---|",
        "| Zürich | 421878 | Suisse |",
        "| Genève | 203856 | Suisse |",
    ]


def test_csv_quoted_fields_keep_their_commas_and_line_breaks():
    data = b'name,comment\n"Smith, Jo","first line\nsecond line"\n'

    parsed = parsing.parse(data, filename="comments.csv")

    assert parsed.blocks[0].text.splitlines()[2] == "| Smith, Jo | first line second line |"


def test_tsv_is_split_on_tabs_only():
    parsed = parsing.parse(b"term\tmeaning\nVACUUM\treclaims storage, and more\n", filename="glossary.tsv")

    assert parsed.media_type == parsing.TSV
    assert parsed.blocks[0].text.splitlines()[2] == "| VACUUM | reclaims storage, and more |"


def test_a_csv_over_the_row_limit_is_refused(monkeypatch):
    monkeypatch.setattr(parsing, "MAX_SHEET_ROWS", 50)
    data = "\n".join(f"{i},{i * 2}" for i in range(60)).encode()

    with pytest.raises(parsing.ParseError, match="more than 50 rows"):
        parsing.parse(data, filename="numbers.csv")


# --- Slides --------------------------------------------------------------------------------------------------------


def test_each_slide_is_a_section_with_its_text_table_and_speaker_notes():
    data = documents.pptx_bytes(
        [
            {"title": "Why we migrate", "body": ["Costs fall by half", "Backups are automatic"]},
            {
                "title": "Timeline",
                "table": [["Phase", "Month"], ["Pilot", "March"], ["Rollout", "June"]],
                "notes": "Stress that the pilot is reversible.",
            },
            {"title": ""},
        ]
    )

    parsed = parsing.parse(data, filename="plan.pptx")

    assert parsed.media_type == parsing.PPTX
    assert parsed.page_count == 3
    assert [(block.headings, block.page, block.text) for block in parsed.blocks] == [
        (("Why we migrate",), 1, "Costs fall by half\nBackups are automatic"),
        (("Timeline",), 2, "| Phase | Month |\n|---|---|\n| Pilot | March |\n| Rollout | June |"),
        (("Timeline",), 2, "Speaker notes: Stress that the pilot is reversible."),
    ]


# --- EPUB ----------------------------------------------------------------------------------------------------------


def test_epub_chapters_come_in_spine_order_under_their_headings():
    data = documents.epub_bytes(
        "The Database Book",
        [
            (
                "Chapter 2: Indexes",
                "<p>An index speeds up lookups.</p><h2>B-trees</h2><p>Balanced trees.</p>",
            ),
            ("Chapter 1: Tables", "<p>A table holds rows.</p>"),
        ],
        spine_order=[1, 0],
    )

    parsed = parsing.parse(data, filename="book.epub")

    assert parsed.media_type == parsing.EPUB
    assert parsed.title == "The Database Book"
    assert [(block.headings, block.text) for block in parsed.blocks] == [
        (("Chapter 1: Tables",), "A table holds rows."),
        (("Chapter 2: Indexes",), "An index speeds up lookups."),
        (("Chapter 2: Indexes", "B-trees"), "Balanced trees."),
    ]
    assert "Contents" not in parsed.text  # the navigation document is not a chapter


def test_an_epub_without_its_package_file_fails_with_a_reason():
    data = plain_zip({"mimetype": "application/epub+zip", "META-INF/container.xml": "<container/>"})

    with pytest.raises(parsing.ParseError, match="EPUB book could not be read"):
        parsing.parse(data, filename="broken.epub")


# --- Tables in HTML and Word ---------------------------------------------------------------------------------------


def test_html_tables_become_markdown_rows_and_layout_tables_stay_prose():
    html = (
        "<html><body><h1>Limits</h1><table><caption>Defaults</caption><thead><tr><th>Setting</th>"
        "<th>Default</th></tr></thead><tbody><tr><td>work_mem</td><td>4 MB</td></tr>"
        "<tr><td>max_connections</td><td>100</td></tr></tbody></table>"
        "<table><tr><td><p>A page laid out in a one-column table.</p></td></tr></table></body></html>"
    )

    parsed = parsing.parse(html.encode(), filename="limits.html")

    assert [block.text for block in parsed.blocks] == [
        "Defaults",
        "| Setting | Default |\n|---|---|\n| work_mem | 4 MB |\n| max_connections | 100 |",
        "A page laid out in a one-column table.",
    ]


def test_a_long_html_table_repeats_its_header_in_every_chunk():
    # Cells of whole sentences, after prose: a chunk cut between a block's sentences would lose the header.
    rows = "".join(
        f"<tr><td>setting_{i}</td><td>{i} ms</td><td>Controls part {i}. Set it per session.</td></tr>"
        for i in range(300)
    )
    intro = "<p>" + "The settings below are read when the server starts. " * 12 + "</p>"
    html = (
        f"<html><body><h1>Settings</h1>{intro}<table><tr><th>Name</th><th>Default</th><th>Meaning</th></tr>"
        f"{rows}</table>"
    )

    drafts = chunks(parsing.parse(html.encode(), filename="settings.html"))

    assert len(drafts) > 5
    assert drafts[0].text.startswith("The settings below")
    table_chunks = [draft for draft in drafts if "setting_" in draft.text]
    assert all("| Name | Default | Meaning |\n|---|---|---|\n" in draft.text for draft in table_chunks)
    assert all(draft.text.startswith("| Name |") for draft in table_chunks[1:])


def test_word_tables_become_markdown_rows_under_their_heading():
    data = documents.docx_with_table_bytes("Price list", ["Item", "Price"], [["Tea", "3"], ["Coffee", "4"]])

    parsed = parsing.parse(data, filename="prices.docx")

    assert [(block.headings, block.text) for block in parsed.blocks] == [
        (("Price list",), "| Item | Price |\n|---|---|\n| Tea | 3 |\n| Coffee | 4 |")
    ]


# --- Tables in PDF text layers -------------------------------------------------------------------------------------


def prose_lines(text: str, *, x: float, top: float, width: int, pitch: float = 5.0):
    return [(x, top + n * pitch, line, "helvetica") for n, line in enumerate(textwrap.wrap(text, width))]


PROSE = (
    "Autovacuum is a background process that removes the dead rows left behind by updates and deletes, so that "
    "the space they take can be used again, and it keeps the statistics that the planner relies on fresh. It "
    "starts one worker for each database in turn and never needs to be run by hand on a healthy server, though a "
    "very busy table can outpace it when its thresholds are left at their defaults for a long time."
)


def test_a_pdf_table_becomes_markdown_rows_with_its_header_between_the_text_around_it():
    table = documents.table_items(
        ["Setting", "Default", "Unit"],
        [
            ["work_mem", "4", "MB"],
            ["max_connections", "100", "connections"],
            ["shared_buffers", "128", "MB"],
            ["statement_timeout", "0", "ms"],
        ],
        columns=[20, 70, 100],
        top=40,
    )
    page = [
        (20, 30, "The limits below apply to every server.", "helvetica"),
        *table,
        (20, 75, "Restart the server after changing them.", "helvetica"),
    ]

    parsed = parsing.parse(documents.positioned_pdf_bytes([page]), filename="limits.pdf")

    assert [(block.page, block.table, block.text) for block in parsed.blocks] == [
        (1, False, "The limits below apply to every server."),
        (
            1,
            True,
            "| Setting | Default | Unit |\n|---|---|---|\n| work_mem | 4 | MB |\n"
            "| max_connections | 100 | connections |\n| shared_buffers | 128 | MB |\n| statement_timeout | 0 | ms |",
        ),
        (1, False, "Restart the server after changing them."),
    ]


def test_a_page_whose_tables_cannot_be_read_is_read_as_text(monkeypatch, caplog):
    from knowledge import pdf_tables

    def broken(textpage):
        raise ValueError("an unexpected character box")

    monkeypatch.setattr(pdf_tables, "page_tables", broken)
    table = documents.table_items(
        ["Setting", "Default", "Unit"],
        [["work_mem", "4", "MB"], ["max_connections", "100", "connections"], ["shared_buffers", "128", "MB"]],
        columns=[20, 70, 100],
        top=40,
    )
    page = [(20, 30, "The limits below apply to every server.", "helvetica"), *table]

    parsed = parsing.parse(documents.positioned_pdf_bytes([page]), filename="limits.pdf")

    text = " ".join(block.text for block in parsed.blocks)
    assert not any(block.table for block in parsed.blocks)
    assert "The limits below apply to every server." in text and "max_connections" in text
    assert "page 1: its tables could not be read" in caplog.text


def test_a_pdf_table_header_is_told_by_its_font_or_by_words_over_numbers_and_a_list_of_terms_has_none():
    numbers = [
        (x, 30 + n * 5.5, cell, "helvetica")
        for n, row in enumerate([["Year", "Releases"], ["2022", "14"], ["2023", "17"], ["2024", "21"]])
        for x, cell in zip([20, 60], row, strict=True)
    ]
    terms = [
        (x, 80 + n * 5.5, cell, "helvetica")
        for n, row in enumerate(
            [["C-a", "Go to the beginning."], ["C-e", "Go to the end."], ["M-b", "Go back."]]
        )
        for x, cell in zip([20, 60], row, strict=True)
    ]

    parsed = parsing.parse(documents.positioned_pdf_bytes([numbers, terms]), filename="lists.pdf")

    assert [block.text for block in parsed.blocks] == [
        "| Year | Releases |\n|---|---|\n| 2022 | 14 |\n| 2023 | 17 |\n| 2024 | 21 |",
        "| C-a | Go to the beginning. |\n| C-e | Go to the end. |\n| M-b | Go back. |",
    ]


def test_a_long_pdf_table_repeats_its_header_in_every_chunk():
    rows = [[f"setting_{i}", f"{i} ms", f"Controls part {i}."] for i in range(44)]
    page = [
        *prose_lines(PROSE, x=20, top=20, width=95),
        *documents.table_items(["Name", "Default", "Meaning"], rows, columns=[20, 60, 90], top=50),
    ]

    drafts = chunks(parsing.parse(documents.positioned_pdf_bytes([page]), filename="settings.pdf"))

    assert drafts[0].text.startswith("Autovacuum is a background process")
    table_chunks = [draft for draft in drafts if "setting_" in draft.text]
    assert len(table_chunks) > 2
    assert all("| Name | Default | Meaning |\n|---|---|---|\n" in draft.text for draft in table_chunks)
    assert all(draft.text.startswith("| Name |") for draft in table_chunks[1:])
    assert sum(draft.text.count("| setting_") for draft in table_chunks) == 44


def test_a_pdf_table_going_on_at_the_head_of_the_next_page_keeps_its_header_there():
    rows = [[f"code_{i}", f"{i * 7}", f"Reason {i}"] for i in range(12)]
    foot = [
        *prose_lines(PROSE, x=20, top=20, width=95),
        *documents.table_items(["Code", "Count", "Reason"], rows[:8], columns=[20, 60, 90], top=240),
    ]
    head = documents.table_items(None, rows[8:], columns=[20, 60, 90], top=20)
    after_prose = [
        *prose_lines(PROSE, x=20, top=20, width=95),
        *documents.table_items(None, rows[8:], columns=[20, 60, 90], top=50),
    ]

    continued = parsing.parse(documents.positioned_pdf_bytes([foot, head]), filename="codes.pdf")
    separate = parsing.parse(documents.positioned_pdf_bytes([foot, after_prose]), filename="codes.pdf")

    second_page = [block.text for block in continued.blocks if block.page == 2]
    assert second_page == [
        "| Code | Count | Reason |\n|---|---|---|\n| code_8 | 56 | Reason 8 |\n| code_9 | 63 | Reason 9 |\n"
        "| code_10 | 70 | Reason 10 |\n| code_11 | 77 | Reason 11 |"
    ]
    assert [block.text for block in separate.blocks if block.page == 2 and block.table] == [
        "| code_8 | 56 | Reason 8 |\n| code_9 | 63 | Reason 9 |\n| code_10 | 70 | Reason 10 |\n"
        "| code_11 | 77 | Reason 11 |"
    ]


def two_text_columns() -> bytes:
    # Lines of 42 characters side by side: short enough for cells, but each has the words of a sentence.
    return documents.positioned_pdf_bytes(
        [[*prose_lines(PROSE, x=20, top=30, width=42), *prose_lines(PROSE[::-1], x=110, top=30, width=42)]]
    )


def contents_page() -> bytes:
    # Short dot leaders, so that only the leaders tell these lines from a table's rows.
    entries = [("1", "Introduction", "1"), ("1.1", "Getting started", "3"), ("1.2", "Maintenance", "7")]
    entries += [("2", "Replication", "12"), ("2.1", "Streaming", "15")]
    items = []
    for n, (number, title, page) in enumerate(entries):
        y = 30 + n * 6
        items += [(20, y, number, "helvetica"), (35, y, f"{title} " + ". " * 10, "helvetica")]
        items.append((110, y, page, "helvetica"))
    return documents.positioned_pdf_bytes([items])


def code_listing() -> bytes:
    code = ["x <- c(1, 2, 3)", "y <- x^2", "fit <- lm(y ~ x)", "summary(fit)"]
    items = [(20, 30 + n * 5, line, "courier") for n, line in enumerate(code)]
    items += [(90, 30 + n * 5, f"# step {n}: see the text", "courier") for n in range(len(code))]
    return documents.positioned_pdf_bytes([items])


@pytest.mark.parametrize(
    ("build", "kept"),
    [
        (lambda: documents.pdf_bytes([PROSE * 3]), "removes the dead rows"),
        (two_text_columns, "removes the dead rows"),
        (contents_page, "Getting started"),
        (code_listing, "fit <- lm(y ~ x)"),
    ],
    ids=["prose", "two text columns", "contents with dot leaders", "code listing"],
)
def test_a_pdf_page_that_only_lines_up_like_a_table_stays_text(build, kept):
    data = build()

    parsed = parsing.parse(data, filename="book.pdf")

    assert not any(block.table for block in parsed.blocks)
    assert "|" not in parsed.text
    assert kept in parsed.text


# --- Ingestion -----------------------------------------------------------------------------------------------------


@pytest.fixture
def collection():
    return CollectionFactory(slug="formats", embedding_model=HASHING)


def add(collection, name, data, capture):
    with capture(execute=True):
        added = services.document_add(collection=collection, name=name, content=data)
    return Document.objects.get(pk=added.document.pk)


@pytest.fixture
def thousand_row_sheets(monkeypatch):
    monkeypatch.setattr(parsing, "MAX_SHEET_ROWS", 1000)


SALES_HEADER = ["Region", "Product", "Units", "Revenue"]


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        (
            "sales.xlsx",
            documents.xlsx_bytes({"Sales": [SALES_HEADER, *sales_rows(200)]}),
            (
                parsing.XLSX,
                HEADER,
                "Widget model 117",
            ),
        ),
        (
            "sales.csv",
            "\n".join(",".join(map(str, row)) for row in [SALES_HEADER, *sales_rows(200)]).encode(),
            (
                parsing.CSV,
                HEADER,
                "Widget model 117",
            ),
        ),
        (
            "plan.pptx",
            documents.pptx_bytes(
                [
                    {
                        "title": "Timeline",
                        "table": [["Phase", "Month"], ["Pilot", "March"], ["Rollout", "June"]],
                    }
                ]
            ),
            (
                parsing.PPTX,
                "| Phase | Month |",
                "Rollout June",
            ),
        ),
        (
            "book.epub",
            documents.epub_bytes(
                "Handbook",
                [
                    (
                        "Limits",
                        "<table><tr><th>Setting</th><th>Default</th></tr><tr><td>work_mem</td><td>4 MB</td></tr></table>",
                    )
                ],
            ),
            (
                parsing.EPUB,
                "| Setting | Default |",
                "work_mem",
            ),
        ),
        (
            "prices.docx",
            documents.docx_with_table_bytes("Prices", ["Item", "Price"], [["Tea", "3"], ["Coffee", "4"]]),
            (
                parsing.DOCX,
                "| Item | Price |",
                "Coffee",
            ),
        ),
    ],
)
@pytest.mark.django_db
def test_each_format_is_ingested_ready_with_searchable_chunks_that_carry_the_header(
    collection, django_capture_on_commit_callbacks, name, data, expected
):
    media_type, header, query = expected

    document = add(collection, name, data, django_capture_on_commit_callbacks)

    assert document.status == Document.Status.READY, document.error
    assert document.media_type == media_type
    chunks_ = list(document.chunks.order_by("position"))
    assert chunks_ and all(chunk.text.startswith(header) for chunk in chunks_)
    hits = search.search(query=query, collections=[collection], limit=3, mode="lexical").hits
    assert hits and query.split()[-1] in hits[0].text


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("fake.xlsx", plain_zip({"sheet.csv": "a,b"}), "a ZIP archive that is not a Word"),
        ("bomb.xlsx", documents.zip_bomb_bytes("xl/workbook.xml"), "ZIP bomb"),
        ("bomb.pptx", documents.zip_bomb_bytes("ppt/presentation.xml"), "ZIP bomb"),
        ("bomb.epub", documents.zip_bomb_bytes("mimetype"), "ZIP bomb"),
        (
            "long.xlsx",
            documents.xlsx_bytes({"S": [["n"], *([i] for i in range(2000))]}),
            "more than 1,000 rows",
        ),
        ("long.csv", "\n".join(str(i) for i in range(2000)).encode(), "more than 1,000 rows"),
    ],
)
@pytest.mark.django_db
@pytest.mark.usefixtures("thousand_row_sheets")
def test_hostile_files_end_failed_with_a_reason_and_no_chunks(
    collection, django_capture_on_commit_callbacks, name, data, reason
):
    document = add(collection, name, data, django_capture_on_commit_callbacks)

    assert document.status == Document.Status.FAILED
    assert reason in document.error
    assert document.chunks.count() == 0


@pytest.mark.django_db
def test_a_folder_walk_picks_up_the_new_formats(tmp_path, settings, capsys):
    settings.KNOWLEDGE_EMBEDDING_MODEL = HASHING
    (tmp_path / "sales.xlsx").write_bytes(documents.xlsx_bytes({"Sales": [SALES_HEADER, *sales_rows(3)]}))
    (tmp_path / "sales.csv").write_bytes(b"Region,Units\nNorth,3\n")
    (tmp_path / "plan.pptx").write_bytes(documents.pptx_bytes([{"title": "Plan", "body": ["Start small"]}]))
    (tmp_path / "book.epub").write_bytes(documents.epub_bytes("Book", [("One", "<p>Words.</p>")]))

    call_command("ingest", str(tmp_path), collection="walked")

    assert "walked: 4 added, 0 updated, 0 unchanged, 0 failed" in capsys.readouterr().out
    assert set(Document.objects.values_list("media_type", flat=True)) == {
        parsing.XLSX,
        parsing.CSV,
        parsing.PPTX,
        parsing.EPUB,
    }
