"""OCR of images and scanned PDF pages with Tesseract (issue 17): real pictures of text drawn with a TrueType font,
read by Debian's tesseract. Skipped where tesseract is not installed, unless KB_REQUIRE_OCR=1 (CI), where its
absence fails them instead."""

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from knowledge import ocr, parsing, search, services
from knowledge.embeddings import HASHING
from knowledge.models import Document
from tests import documents
from tests.factories import CollectionFactory

pytestmark = pytest.mark.django_db

FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
)


@pytest.fixture(autouse=True)
def tesseract():
    if shutil.which("tesseract") is None:
        if os.environ.get("KB_REQUIRE_OCR") == "1":
            pytest.fail("The OCR tests are required here (KB_REQUIRE_OCR=1), but tesseract is not installed.")
        pytest.skip("tesseract is not installed (Debian: tesseract-ocr tesseract-ocr-eng)")


@pytest.fixture
def collection():
    return CollectionFactory(slug="scans", embedding_model=HASHING)


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in FONTS:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def text_image(lines: list[str], *, size: int = 44, width: int = 1700) -> Image.Image:
    step = int(size * 1.4)
    image = Image.new("L", (width, 120 + len(lines) * step), 255)
    draw = ImageDraw.Draw(image)
    for number, line in enumerate(lines):
        draw.text((60, 60 + number * step), line, font=font(size), fill=0)
    return image


def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def image_pdf(pages: list[Image.Image]) -> bytes:
    """An image-only PDF, as a scanner makes: one picture per page at 200 dpi, no text layer."""
    buffer = io.BytesIO()
    pages[0].save(buffer, format="PDF", save_all=True, append_images=pages[1:], resolution=200)
    return buffer.getvalue()


def add(collection, name, data, capture):
    with capture(execute=True):
        return services.document_add(collection=collection, name=name, content=data)


LINES = ["The lighthouse keeper logs", "every passing ship at dawn."]


@pytest.mark.parametrize(
    ("format", "media_type", "options"),
    [
        ("PNG", parsing.PNG, {}),
        ("JPEG", parsing.JPEG, {"quality": 90}),
        ("TIFF", parsing.TIFF, {}),
        ("WEBP", parsing.WEBP, {"quality": 90}),
        ("GIF", parsing.GIF, {}),
        ("BMP", parsing.BMP, {}),
    ],
)
def test_every_image_format_is_read_by_ocr(format, media_type, options):
    data = encoded(text_image(LINES), format, **options)

    parsed = parsing.parse(data, filename=f"note.{format.lower()}")

    assert parsed.media_type == media_type
    assert "lighthouse keeper logs every passing ship at dawn" in parsed.text.lower()


def test_every_page_of_a_multipage_tiff_is_read_with_its_page_number():
    pages = [text_image(["Chapter one opens in Lisbon."]), text_image(["Chapter two closes in Porto."])]
    data = encoded(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    progress: list[tuple[int, int]] = []

    parsed = parsing.parse(
        data, filename="book.tiff", on_page=lambda done, total: progress.append((done, total))
    )

    by_page = {block.page: block.text for block in parsed.blocks}
    assert "Lisbon" in by_page[1] and "Porto" in by_page[2]
    assert parsed.page_count == 2
    assert progress == [(1, 2), (2, 2)]


def test_a_gif_is_read_from_its_first_frame_only():
    frames = [text_image(["First frame says hello."]), text_image(["Second frame says goodbye."])]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])

    parsed = parsing.parse(data, filename="anim.gif")

    assert "hello" in parsed.text and "goodbye" not in parsed.text


def test_a_sideways_scan_is_turned_upright_before_it_is_read():
    if "osd" not in ocr._languages(shutil.which("tesseract") or "tesseract"):
        pytest.skip("no osd traineddata (tesseract-ocr-osd): pages are read as they are")
    lines = [
        "Orientation and script detection tells",
        "which way up a page was scanned, so that",
        "a page fed sideways is still read well.",
    ]
    sideways = text_image(lines).rotate(90, expand=True, fillcolor=255)

    parsed = parsing.parse(encoded(sideways, "PNG"), filename="sideways.png")

    assert "page fed sideways is still read well" in parsed.text


def test_a_png_upload_becomes_ready_and_searchable(collection, django_capture_on_commit_callbacks):
    data = encoded(text_image(["Invoice 4471 was paid by the", "harbour authority in March."]), "PNG")

    added = add(collection, "invoice.png", data, django_capture_on_commit_callbacks)

    document = Document.objects.get(pk=added.document.pk)
    assert document.status == Document.Status.READY, document.error
    assert document.media_type == parsing.PNG
    hits = search.search(query="harbour authority", collections=[collection], limit=3, mode="lexical").hits
    assert hits and hits[0].document_id == document.pk


def mixed_pdf() -> bytes:
    typed = documents.pdf_bytes(["The typed page explains the boiler settings in detail."])
    scanned = image_pdf([text_image(["The scanned page lists the", "emergency shutoff valve location."])])
    return documents.merged_pdf_bytes([typed, scanned])


def test_a_pdf_mixing_typed_and_scanned_pages_keeps_both_with_page_numbers():
    progress: list[tuple[int, int]] = []

    parsed = parsing.parse(
        mixed_pdf(), filename="manual.pdf", on_page=lambda *report: progress.append(report)
    )

    pages = {block.page: block.text for block in parsed.blocks}
    assert parsed.page_count == 2
    assert "boiler settings" in pages[1]
    assert "emergency shutoff valve location" in pages[2]
    assert (2, 2) in progress


def test_a_mixed_pdf_upload_becomes_ready_and_its_scanned_page_is_searchable(
    collection, django_capture_on_commit_callbacks
):
    added = add(collection, "manual.pdf", mixed_pdf(), django_capture_on_commit_callbacks)

    document = Document.objects.get(pk=added.document.pk)
    assert document.status == Document.Status.READY, document.error
    assert document.page_count == 2
    assert "boiler settings" in document.content.text and "shutoff valve" in document.content.text
    hits = search.search(query="shutoff valve", collections=[collection], limit=3, mode="lexical").hits
    assert hits and hits[0].document_id == document.pk


def test_the_scanned_pdf_builder_is_read_by_ocr():
    parsed = parsing.parse(documents.scanned_pdf_bytes(), filename="scan.pdf")

    assert parsed.blocks[0].page == 1
    assert "scanned page" in parsed.text


def test_a_pdf_over_the_ocr_page_cap_fails_with_the_reason(
    collection, settings, django_capture_on_commit_callbacks
):
    settings.KNOWLEDGE_OCR_MAX_PAGES = 2
    data = image_pdf([text_image([f"Page {number} of the scan."]) for number in range(3)])

    added = add(collection, "long-scan.pdf", data, django_capture_on_commit_callbacks)

    document = Document.objects.get(pk=added.document.pk)
    assert document.status == Document.Status.FAILED
    assert "3 scanned pages" in document.error and "KNOWLEDGE_OCR_MAX_PAGES" in document.error
    assert document.chunks.count() == 0


def test_ocr_turned_off_for_the_collection_fails_a_scan_with_the_reason(django_capture_on_commit_callbacks):
    collection = CollectionFactory(slug="no-ocr", name="Typed only", embedding_model=HASHING, ocr=False)

    image = add(
        collection, "photo.png", encoded(text_image(LINES), "PNG"), django_capture_on_commit_callbacks
    )
    scan = add(collection, "scan.pdf", image_pdf([text_image(LINES)]), django_capture_on_commit_callbacks)

    for added in (image, scan):
        document = Document.objects.get(pk=added.document.pk)
        assert document.status == Document.Status.FAILED
        assert "OCR is turned off for the collection 'Typed only'" in document.error


def test_without_tesseract_a_scan_fails_with_what_to_install(
    collection, settings, django_capture_on_commit_callbacks
):
    settings.KNOWLEDGE_OCR_TESSERACT = "/nonexistent/bin/tesseract"

    added = add(collection, "scan.png", encoded(text_image(LINES), "PNG"), django_capture_on_commit_callbacks)

    document = Document.objects.get(pk=added.document.pk)
    assert document.status == Document.Status.FAILED
    assert "not installed" in document.error and "tesseract-ocr tesseract-ocr-eng" in document.error


def test_a_missing_ocr_language_fails_with_its_package(
    collection, settings, django_capture_on_commit_callbacks
):
    settings.KNOWLEDGE_OCR_LANGUAGES = "eng+zzz"

    added = add(collection, "scan.png", encoded(text_image(LINES), "PNG"), django_capture_on_commit_callbacks)

    document = Document.objects.get(pk=added.document.pk)
    assert document.status == Document.Status.FAILED
    assert "tesseract-ocr-zzz" in document.error


def test_an_image_of_noise_is_dropped_and_fails_as_having_no_text():
    noise = Image.fromarray((np.random.default_rng(7).random((700, 900)) * 255).astype("uint8"))

    with pytest.raises(parsing.ParseError, match="no readable text"):
        parsing.parse(encoded(noise, "PNG"), filename="noise.png")


def test_a_noise_page_is_dropped_while_the_readable_pages_are_kept():
    noise = Image.fromarray((np.random.default_rng(3).random((1400, 1000)) * 255).astype("uint8"))
    data = image_pdf([text_image(["A clean page about tide tables."]), noise])

    parsed = parsing.parse(data, filename="mixed-scan.pdf")

    assert {block.page for block in parsed.blocks} == {1}
    assert "tide tables" in parsed.text


def test_words_keep_their_confidence_from_the_tsv():
    tsv = (
        "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"
        "1\t1\t0\t0\t0\t0\t0\t0\t100\t100\t-1\t\n"
        '5\t1\t1\t1\t1\t1\t0\t0\t10\t10\t96.5\t"Quoted\n'
        "5\t1\t1\t1\t1\t2\t0\t0\t10\t10\t90.5\tword\n"
        "5\t1\t1\t1\t2\t1\t0\t0\t10\t10\t30\tnext\n"
    )

    page = ocr.parse_tsv(tsv)

    assert [[line.text for line in lines] for lines in page.paragraphs] == [['"Quoted word', "next"]]
    assert page.paragraphs[0][0].confidence == pytest.approx(93.5)
    assert page.words == 3 and page.confidence == pytest.approx(72.333, abs=0.01)


def test_a_page_over_its_time_limit_fails_with_the_setting_named(
    collection, settings, django_capture_on_commit_callbacks
):
    settings.KNOWLEDGE_OCR_PAGE_SECONDS = 0.001

    added = add(collection, "slow.png", encoded(text_image(LINES), "PNG"), django_capture_on_commit_callbacks)

    document = Document.objects.get(pk=added.document.pk)
    assert document.status == Document.Status.FAILED
    assert "KNOWLEDGE_OCR_PAGE_SECONDS" in document.error


def test_with_ocr_off_a_mixed_pdf_keeps_its_typed_pages_only():
    parsed = parsing.parse(mixed_pdf(), filename="manual.pdf", ocr_options=ocr.OcrOptions(enabled=False))

    assert {block.page for block in parsed.blocks} == {1}
    assert "boiler settings" in parsed.text


def sectioned_pdf_with_a_scanned_page(typed: str, scanned: Image.Image) -> bytes:
    """Page 1 typed under the bookmark "Boilers", page 2 a picture only under "Valves"."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    pdf.add_page()
    pdf.start_section("Boilers")
    pdf.multi_cell(0, 6, typed)
    pdf.add_page()
    pdf.start_section("Valves")
    pdf.image(io.BytesIO(encoded(scanned, "PNG")), x=10, y=10, w=190)
    return bytes(pdf.output())


def test_a_question_answered_only_by_the_scan_cites_the_scanned_page(
    django_capture_on_commit_callbacks, reader
):
    from chat import services as chat_services
    from knowledge.embeddings import MINILM

    collection = CollectionFactory(slug="plant", embedding_model=MINILM, visibility="public")
    scan = text_image(
        [
            "The emergency shutoff valve is behind",
            "the blue door in the north stairwell.",
            "Turn it clockwise to close the gas line.",
        ]
    )
    data = sectioned_pdf_with_a_scanned_page("The boiler is serviced every spring by the contractor.", scan)
    added = add(collection, "plant.pdf", data, django_capture_on_commit_callbacks)
    assert Document.objects.get(pk=added.document.pk).status == Document.Status.READY

    asked = chat_services.question_ask(
        user=reader, question="Where is the emergency shutoff valve?", collection_ids=[collection.pk]
    )

    cited = {(c.document_id, c.page_number) for c in asked.answer.citations.all() if c.number == 1}
    assert (added.document.pk, 2) in cited
    assert "blue door" in asked.answer.text
