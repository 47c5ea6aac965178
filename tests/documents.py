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


def positioned_pdf_bytes(pages: list[list[tuple[float, float, str, str]]], *, size: float = 10) -> bytes:
    """A PDF whose text stands where it is told, as a typesetter places it: each page a list of (x, y, text, font),
    x and y in millimetres from the top left corner (y the baseline), font "helvetica", "helvetica-bold" or
    "courier"."""
    from fpdf import FPDF

    pdf = FPDF()
    for items in pages:
        pdf.add_page()
        for x, y, text, font in items:
            family, _, weight = font.partition("-")
            pdf.set_font(family, style="B" if weight == "bold" else "", size=size)
            pdf.text(x, y, text)
    return bytes(pdf.output())


def table_items(
    header: list[str] | None, rows: list[list[str]], *, columns: list[float], top: float, pitch: float = 5.5
) -> list[tuple[float, float, str, str]]:
    """The cells of a table for `positioned_pdf_bytes`: the header row (if any) in bold, each column starting at
    its x."""
    items = []
    for number, row in enumerate([header, *rows] if header else rows):
        font = "helvetica-bold" if header and number == 0 else "helvetica"
        items += [(x, top + number * pitch, cell, font) for x, cell in zip(columns, row, strict=True) if cell]
    return items


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


def docx_with_table_bytes(heading: str, header: list[str], rows: list[list[str]]) -> bytes:
    """A Word document with a heading and one table whose first row is `header`."""
    import docx

    document = docx.Document()
    document.add_paragraph(heading, style="Heading 1")
    table = document.add_table(rows=1 + len(rows), cols=len(header))
    for row, values in zip(table.rows, [header, *rows], strict=True):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def xlsx_bytes(sheets: dict[str, list[list[object]]], *, title: str = "") -> bytes:
    """An Excel workbook, one sheet per (name, rows) entry, written by openpyxl."""
    import openpyxl

    workbook = openpyxl.Workbook(write_only=True)
    if title:
        workbook.properties.title = title
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def pptx_bytes(slides: list[dict[str, object]]) -> bytes:
    """A PowerPoint deck; each slide a dict with "title", optional "body" (lines), "table" (rows, the first the
    header) and "notes"."""
    import pptx
    from pptx.util import Inches

    presentation = pptx.Presentation()
    for spec in slides:
        slide = presentation.slides.add_slide(presentation.slide_layouts[1 if spec.get("body") else 5])
        slide.shapes.title.text = str(spec["title"])
        if spec.get("body"):
            slide.placeholders[1].text_frame.text = "\n".join(spec["body"])  # type: ignore[arg-type]
        if spec.get("table"):
            rows: list[list[str]] = spec["table"]  # type: ignore[assignment]
            shape = slide.shapes.add_table(
                len(rows), len(rows[0]), Inches(1), Inches(2), Inches(6), Inches(2)
            )
            for row, values in zip(shape.table.rows, rows, strict=True):
                for cell, value in zip(row.cells, values, strict=True):
                    cell.text = value
        if spec.get("notes"):
            slide.notes_slide.notes_text_frame.text = str(spec["notes"])
    buffer = io.BytesIO()
    presentation.save(buffer)
    return buffer.getvalue()


def epub_bytes(title: str, chapters: list[tuple[str, str]], *, spine_order: list[int] | None = None) -> bytes:
    """An EPUB 3 book from (chapter heading, chapter body HTML) pairs; `spine_order` reorders the spine (reading
    order) relative to the order the chapters are stored and listed in the manifest."""
    order = spine_order if spine_order is not None else list(range(len(chapters)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            zipfile.ZipInfo("mimetype"), "application/epub+zip"
        )  # first and stored, as the spec says
        archive.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container version="1.0" '
            'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
            '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>",
        )
        manifest = ['<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>']
        for index, (heading, body) in enumerate(chapters):
            manifest.append(
                f'<item id="c{index}" href="text/ch{index}.xhtml" media-type="application/xhtml+xml"/>'
            )
            archive.writestr(
                f"OEBPS/text/ch{index}.xhtml",
                '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml"><head>'
                f"<title>{heading}</title></head><body><section><header><h1>{heading}</h1></header>"
                f"{body}</section></body></html>",
            )
        archive.writestr(
            "OEBPS/nav.xhtml",
            '<html xmlns="http://www.w3.org/1999/xhtml"><body><nav><ol><li>Contents</li></ol></nav></body></html>',
        )
        spine = "".join(f'<itemref idref="c{index}"/>' for index in order)
        archive.writestr(
            "OEBPS/content.opf",
            '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0" '
            'unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f'<dc:identifier id="id">urn:test</dc:identifier><dc:title>{title}</dc:title></metadata>'
            f"<manifest>{''.join(manifest)}</manifest><spine>{spine}</spine></package>",
        )
    return buffer.getvalue()


def zip_bomb_bytes(main_part: str, expanded_mb: int = 300, *, content_types: bool = True) -> bytes:
    """A tiny zip with the member that names an Office file's kind (`xl/workbook.xml`, `ppt/presentation.xml`) or an
    EPUB's mimetype (`main_part="mimetype"`), and one member that inflates to `expanded_mb` megabytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        if main_part == "mimetype":
            archive.writestr("mimetype", "application/epub+zip")
            bomb = "OEBPS/big.xhtml"
        else:
            if content_types:
                archive.writestr("[Content_Types].xml", "<Types/>")
            archive.writestr(main_part, "<x/>")
            bomb = main_part.split("/", maxsplit=1)[0] + "/media/big.bin"
        with archive.open(bomb, "w", force_zip64=True) as member:
            block = b"\0" * (1024 * 1024)
            for _ in range(expanded_mb):
                member.write(block)
    return buffer.getvalue()


def merged_pdf_bytes(parts: list[bytes]) -> bytes:
    """The pages of several PDFs, in order, as one PDF."""
    import pypdfium2 as pdfium

    merged = pdfium.PdfDocument.new()
    for part in parts:
        source = pdfium.PdfDocument(part)
        merged.import_pages(source)
        source.close()
    buffer = io.BytesIO()
    merged.save(buffer)
    merged.close()
    return buffer.getvalue()
