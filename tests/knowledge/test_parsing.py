import os

import pytest

from knowledge import parsing
from knowledge.ocr import OcrOptions
from tests import documents


def test_pdf_keeps_page_numbers_and_outline_as_headings():
    data = documents.pdf_bytes(
        [
            "Installation requires a compiler.",
            "Autovacuum runs every minute by default.",
            "Replication is async.",
        ],
        outline=[
            (0, 1, "Getting started"),
            (1, 1, "Maintenance"),
            (1, 2, "Autovacuum"),
            (2, 1, "Replication"),
        ],
    )

    parsed = parsing.parse(data, filename="manual.pdf")

    assert parsed.media_type == parsing.PDF
    assert parsed.page_count == 3
    by_page = {block.page: block for block in parsed.blocks}
    assert by_page[2].text == "Autovacuum runs every minute by default."
    assert by_page[2].headings == ("Maintenance", "Autovacuum")
    assert by_page[3].headings == ("Replication",)
    assert parsed.text[by_page[2].start : by_page[2].end] == by_page[2].text


def test_pdf_without_text_layer_fails_with_reason_when_ocr_is_off():
    with pytest.raises(parsing.ParseError, match="no text layer"):
        parsing.parse(
            documents.scanned_pdf_bytes(), filename="scan.pdf", ocr_options=OcrOptions(enabled=False)
        )


def test_encrypted_pdf_fails_with_reason():
    data = documents.pdf_bytes(["Secret plans."], password="hunter2")

    with pytest.raises(parsing.ParseError, match="encrypted"):
        parsing.parse(data, filename="secret.pdf")


def test_corrupt_pdf_fails_with_reason():
    data = documents.pdf_bytes(["Some text that will be cut off."])

    with pytest.raises(parsing.ParseError, match="not a readable PDF"):
        parsing.parse(data[: len(data) // 3], filename="broken.pdf")


def test_html_keeps_headings_and_drops_scripts_styles_and_navigation():
    html = """<!doctype html><html><head><title>Backups</title><style>p {color: red}</style></head>
    <body><nav><a href="/">Home</a> Navigation menu</nav>
    <div class="navheader">Prev Up Next</div>
    <main><h1>Backups</h1><p>Take a base backup with <code>pg_basebackup</code>.</p>
    <h2>Restore</h2><p>Restore by copying the files back.</p>
    <div class="note"><h3>Note</h3><p>Stop the server first.</p></div>
    <p>Then start it again.</p>
    <script>alert("x")</script></main><footer>Copyright</footer></body></html>"""

    parsed = parsing.parse(html.encode(), filename="backup.html")

    texts = [(block.headings, block.text) for block in parsed.blocks]
    assert parsed.title == "Backups"
    assert texts == [
        (("Backups",), "Take a base backup with pg_basebackup."),
        (("Backups", "Restore"), "Restore by copying the files back."),
        (("Backups", "Restore"), "Note: Stop the server first."),
        (("Backups", "Restore"), "Then start it again."),
    ]
    assert "alert" not in parsed.text and "Navigation" not in parsed.text and "Copyright" not in parsed.text


def test_html_with_only_scripts_fails_with_reason():
    html = b"<html><head><script>var a = 1;</script></head><body><script>go()</script></body></html>"

    with pytest.raises(parsing.ParseError, match="no readable content"):
        parsing.parse(html, filename="app.html")


def test_markdown_headings_become_section_paths_and_code_fences_are_kept_whole():
    text = "# Guide\n\nIntro text.\n\n## Install\n\nRun this:\n\n```sh\n# not a heading\npip install x\n```\n\nSetext\n------\n\nLast words."

    parsed = parsing.parse(text.encode(), filename="guide.md")

    assert parsed.media_type == parsing.MARKDOWN
    assert parsed.title == "Guide"
    assert [(b.headings, b.text) for b in parsed.blocks] == [
        (("Guide",), "Intro text."),
        (("Guide", "Install"), "Run this:"),
        (("Guide", "Install"), "```sh\n# not a heading\npip install x\n```"),
        (("Guide", "Setext"), "Last words."),
    ]


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("utf-8", "Café crème, naïve façade — déjà vu."),
        ("latin-1", "Café crème, naïve façade et déjà vu, à la française, s'il vous plaît. " * 3),
        ("cp1252", "Smart “quotes” and a euro sign € in a Windows file, and more “quotes”. " * 3),
        ("utf-16", "Unicode text with a byte-order mark: ünïcödé."),
        ("shift_jis", "日本語のテキストです。これはテストの文章です。文字コードを自動で判定します。" * 3),
    ],
)
def test_plain_text_in_common_encodings_is_decoded(encoding, text):
    parsed = parsing.parse(text.encode(encoding), filename="notes.txt")

    assert parsed.media_type == parsing.TEXT
    assert parsed.blocks[0].text == text.strip()


def test_docx_headings_and_tables_are_read():
    data = documents.docx_bytes(
        [
            ("Heading 1", "Policy"),
            ("Normal", "Everyone gets a laptop."),
            ("Heading 2", "Returns"),
            ("Normal", "Return it when you leave."),
        ]
    )

    parsed = parsing.parse(data, filename="policy.docx")

    assert parsed.media_type == parsing.DOCX
    assert [(b.headings, b.text) for b in parsed.blocks] == [
        (("Policy",), "Everyone gets a laptop."),
        (("Policy", "Returns"), "Return it when you leave."),
    ]


def test_docx_zip_bomb_is_refused_without_inflating_it():
    with pytest.raises(parsing.ParseError, match="ZIP bomb"):
        parsing.parse(documents.zip_bomb_docx_bytes(), filename="big.docx")


@pytest.mark.parametrize(
    ("data", "name", "reason"),
    [
        (b"", "empty.txt", "empty"),
        (b"   \n\t  ", "blank.txt", "empty"),
        (os.urandom(4096) + b"\x00\x01\x02", "random.txt", "Unsupported type"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "picture.txt", "not a readable image"),
        (b"\x7fELF\x02\x01\x01" + b"\x00" * 100, "program.pdf", "Unsupported type: an executable"),
        (b"PK\x03\x04" + b"\x00" * 100, "archive.zip", "Unsupported type"),
    ],
)
def test_bad_input_fails_with_a_clear_reason(data, name, reason):
    with pytest.raises(parsing.ParseError, match=reason):
        parsing.parse(data, filename=name)


def test_type_is_decided_by_content_not_extension():
    assert parsing.detect_media_type(documents.pdf_bytes(["x"]), "looks-like.txt") == parsing.PDF
    assert parsing.detect_media_type(b"<html><body><p>hi</p></body></html>", "page.txt") == parsing.HTML
    assert parsing.detect_media_type(b"just words", "fake.pdf") == parsing.TEXT


def test_a_docx_bomb_whose_headers_understate_its_size_is_refused_while_inflating(monkeypatch):
    import docx

    def never(*args, **kwargs):
        raise AssertionError("python-docx must not be handed the bomb")

    monkeypatch.setattr(docx, "Document", never)
    # zipfile stops at the stated size and the CRC then fails: refused having inflated 1 KB, not 300 MB
    with pytest.raises(parsing.ParseError, match="could not be read: Bad CRC-32"):
        parsing.parse(documents.understated_zip_bomb_docx_bytes(), filename="small-looking.docx")


def test_a_docx_whose_markup_alone_is_too_big_to_parse_is_refused(monkeypatch):
    monkeypatch.setattr(parsing, "MAX_ZIP_XML", 64 * 1024)
    data = documents.docx_bytes([("Normal", "A paragraph of ordinary words. " * 40)] * 200)

    with pytest.raises(parsing.ParseError, match="text and markup expand to more than"):
        parsing.parse(data, filename="long.docx")


def test_a_docx_with_one_run_of_text_longer_than_the_xml_parser_takes_is_refused_with_a_reason():
    # 11 million characters in one paragraph (libxml2 stops at 10 MB per text node): a 20 KB file.
    data = documents.docx_bytes([("Normal", "a" * 11_000_000)])

    with pytest.raises(parsing.ParseError, match="more than 10 MB of text in one run"):
        parsing.parse(data, filename="dense.docx")


def test_an_html_page_with_too_many_elements_is_refused_before_it_is_parsed(monkeypatch):
    import bs4

    def never(*args, **kwargs):
        raise AssertionError("the page must not be parsed")

    monkeypatch.setattr(bs4, "BeautifulSoup", never)
    page = "<html><body>" + "<span>w</span>" * (parsing.MAX_HTML_ELEMENTS + 1) + "</body></html>"

    with pytest.raises(parsing.ParseError, match=r"elements; at most 250,000 are read"):
        parsing.parse(page.encode(), filename="huge.html")


def test_an_html_page_nested_too_deeply_is_refused_with_a_reason():
    page = "<html><body>" + "<div>" * 20_000 + "deep" + "</div>" * 20_000 + "</body></html>"

    with pytest.raises(parsing.ParseError, match="nested too deeply"):
        parsing.parse(page.encode(), filename="deep.html")
