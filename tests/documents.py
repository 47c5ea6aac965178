"""Builders of real files in every supported format (and broken ones), for parsing and ingestion tests."""

import io
import zipfile


def pdf_bytes(
    pages: list[str], *, outline: list[tuple[int, int, str]] | None = None, password: str = ""
) -> bytes:
    """A PDF with a text layer, one string per page; `outline` entries are (page index, level, title)."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    outline_by_page: dict[int, list[tuple[int, str]]] = {}
    for page_index, level, title in outline or []:
        outline_by_page.setdefault(page_index, []).append((level, title))
    for index, text in enumerate(pages):
        pdf.add_page()
        for level, title in outline_by_page.get(index, []):
            pdf.start_section(title, level=level - 1)
        pdf.multi_cell(0, 6, text)
    if password:
        pdf.set_encryption(owner_password=password + "-owner", user_password=password)
    return bytes(pdf.output())


def scanned_pdf_bytes() -> bytes:
    """A PDF whose only content is a picture of text: no text layer, as a scanner makes."""
    from fpdf import FPDF
    from PIL import Image, ImageDraw

    image = Image.new("L", (400, 120), 255)
    ImageDraw.Draw(image).text((10, 40), "This is a scanned page", fill=0)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    pdf = FPDF()
    pdf.add_page()
    pdf.image(io.BytesIO(buffer.getvalue()), x=10, y=10, w=150)
    return bytes(pdf.output())


def docx_bytes(paragraphs: list[tuple[str, str]]) -> bytes:
    """A Word document from (style, text) pairs, e.g. ("Heading 1", "Intro"), ("Normal", "Some text.")."""
    import docx

    document = docx.Document()
    for style, text in paragraphs:
        document.add_paragraph(text, style=style)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def understated_zip_bomb_docx_bytes(expanded_mb: int = 300) -> bytes:
    """A zip bomb whose headers say its document part holds 1 KB: only counting while inflating catches it."""
    data = bytearray(zip_bomb_docx_bytes(expanded_mb))
    size = expanded_mb * 1024 * 1024
    # The size sits in the local header and the central directory, as 4 bytes and in the zip64 extra field as 8
    for width in (8, 4):
        real, stated = size.to_bytes(width, "little"), (1024).to_bytes(width, "little")
        data = bytearray(bytes(data).replace(real, stated))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        assert archive.getinfo("word/document.xml").file_size == 1024
    return bytes(data)


def zip_bomb_docx_bytes(expanded_mb: int = 300) -> bytes:
    """A tiny file that claims to be a Word document and inflates to `expanded_mb` megabytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            block = b"\0" * (1024 * 1024)
            for _ in range(expanded_mb):
                member.write(block)
    return buffer.getvalue()
