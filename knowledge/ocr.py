"""Read the text of a picture with Tesseract: the `tesseract` program run once per page, under a time limit.

Tesseract is a Debian package (`tesseract-ocr`, with one `tesseract-ocr-<lang>` package per language), not a Python
one, so it is called as a program: no network, nothing downloaded. Each page is read as TSV, so that every word keeps its
confidence; a page that reads poorly is asked for its orientation (`--psm 0`, which needs the `osd` language data;
without it pages are read as they are), turned upright and read again. A page whose words are few or mostly guesses is
noise and dropped.
Small skews need nothing from us: Tesseract's own layout analysis reads lines a few degrees off straight.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import InvalidInput

if TYPE_CHECKING:
    from PIL import Image

# Scanned PDF pages are rendered at 400 dpi: at 300 Tesseract runs a single-letter word into the next one where a
# typeface spaces them tightly ("Ris an integrated", "asuite of"), at 400 it does not, for about a fifth more time
# (benchmarks/ingest.py --ocr). A page so large that this would pass MAX_PIXELS (A4 is 15.5 million) is rendered
# smaller, to stay within.
RENDER_DPI = 400
MAX_PIXELS = 36_000_000
# A picture smaller than this on its longer side (a screenshot, a phone photo shrunk for mail) is enlarged twice
# first: Tesseract misreads letters under about 20 px high.
UPSCALE_BELOW = 1600
# A page is kept when it has at least MIN_WORDS words and their mean confidence (0-100) is at least MIN_CONFIDENCE:
# clean scans read at 90-96, a page of noise or a photograph without text at 20-50 with a handful of "words".
MIN_WORDS = 3
MIN_CONFIDENCE = 60.0
MIN_WORD_CONFIDENCE = 30.0
MIN_KEPT_SHARE = 0.25
# A page read upright at this mean confidence or more is taken as upright; below it, OSD is asked.
UPRIGHT_CONFIDENCE = 80.0
# OSD's own confidence in the orientation it reports; below this its guess is ignored (upright text reads 5-30).
MIN_ORIENTATION_CONFIDENCE = 2.0

INSTALL_HINT = (
    "install Debian's tesseract-ocr and tesseract-ocr-eng packages (apt-get install tesseract-ocr tesseract-ocr-eng) "
    "or set KNOWLEDGE_OCR_TESSERACT to the program's path"
)


class OcrError(InvalidInput):
    """OCR could not be done (not installed, turned off, too many pages, too slow); the message says why."""


class OcrTimeout(OcrError):
    """A page took longer than its time limit."""


@dataclass(frozen=True)
class OcrOptions:
    """How a document is OCRed; built from settings and the collection (knowledge.services.indexing)."""

    enabled: bool = True
    languages: str = "eng"
    tesseract: str = "tesseract"
    page_seconds: float = 120.0
    max_pages: int = 500
    disabled_reason: str = "OCR is turned off."


@dataclass(frozen=True)
class OcrLine:
    text: str
    confidence: float


@dataclass(frozen=True)
class OcrPage:
    """The paragraphs of one page, each a list of lines, with the page's mean word confidence."""

    paragraphs: list[list[OcrLine]]
    confidence: float
    words: int
    rotated: int = 0

    @property
    def is_noise(self) -> bool:
        return self.words < MIN_WORDS or self.confidence < MIN_CONFIDENCE


def check_available(options: OcrOptions) -> str:
    """The tesseract program to run, once it is known to have the languages asked for; raises OcrError."""
    if not options.enabled:
        raise OcrError(options.disabled_reason)
    program = shutil.which(options.tesseract)
    if program is None:
        raise OcrError(
            f"OCR needs Tesseract, which is not installed here (no program {options.tesseract!r}): {INSTALL_HINT}."
        )
    installed = _languages(program)
    missing = [lang for lang in options.languages.split("+") if lang and lang not in installed]
    if missing:
        packages = " ".join(f"tesseract-ocr-{lang.lower().replace('_', '-')}" for lang in missing)
        raise OcrError(
            f"OCR language data {'+'.join(missing)!r} is not installed for Tesseract: install Debian's {packages} "
            "(or change KNOWLEDGE_OCR_LANGUAGES)."
        )
    return program


@lru_cache(maxsize=8)
def _languages(program: str) -> frozenset[str]:
    try:
        result = subprocess.run(  # noqa: S603 - a program found on PATH or named by a setting, never by a user
            [program, "--list-langs"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OcrError(f"Tesseract ({program}) could not be run: {exc}; {INSTALL_HINT}.") from exc
    lines = (result.stdout + result.stderr).splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and " " not in line.strip())


def prepare(image: Image.Image) -> Image.Image:
    """The picture as 8-bit grey, enlarged when small and shrunk when huge, ready for Tesseract."""
    from PIL import Image as PilImage
    from PIL import ImageOps

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels are often black underneath: put the picture on white, as it is shown.
        rgba = image.convert("RGBA")
        background = PilImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = PilImage.alpha_composite(background, rgba)
    image = ImageOps.exif_transpose(image) or image
    image = image.convert("L")
    width, height = image.size
    if max(width, height) < UPSCALE_BELOW and width * height * 4 <= MAX_PIXELS:
        image = image.resize((width * 2, height * 2), PilImage.Resampling.LANCZOS)
    elif width * height > MAX_PIXELS:
        factor = (MAX_PIXELS / (width * height)) ** 0.5
        image = image.resize(
            (max(1, int(width * factor)), max(1, int(height * factor))), PilImage.Resampling.LANCZOS
        )
    return image


def read_page(image: Image.Image, *, program: str, options: OcrOptions, page: int) -> OcrPage:
    """OCR one prepared page; raises OcrError when Tesseract fails or passes the page's time limit.

    A page that reads poorly upright is asked for its orientation and, turned as OSD says, read again; the better
    reading is kept. OSD costs a third of a reading, so pages that read well never pay for it."""
    with tempfile.TemporaryDirectory(prefix="kb-ocr-") as folder:
        path = Path(folder) / "page.png"
        image.save(path, format="PNG")
        result = _read(path, program=program, options=options, page=page)
        if result.confidence >= UPRIGHT_CONFIDENCE and not result.is_noise:
            return result
        rotation = _orientation(path, program=program, options=options, page=page)
        if not rotation:
            return result
        image.rotate(-rotation, expand=True, fillcolor=255).save(path, format="PNG")
        turned = _read(path, program=program, options=options, page=page)
    if turned.confidence * max(turned.words, 1) > result.confidence * max(result.words, 1):
        return OcrPage(turned.paragraphs, turned.confidence, turned.words, rotated=rotation)
    return result


def _read(path: Path, *, program: str, options: OcrOptions, page: int) -> OcrPage:
    tsv = _run(
        [program, str(path), "stdout", "-l", options.languages, "--psm", "3", "tsv"],
        options=options,
        page=page,
    )
    return parse_tsv(tsv)


def _orientation(path: Path, *, program: str, options: OcrOptions, page: int) -> int:
    """Degrees clockwise to turn the page upright, as Tesseract's OSD says; 0 without osd data or when unsure."""
    if "osd" not in _languages(program):
        return 0
    try:
        output = _run([program, str(path), "stdout", "--psm", "0"], options=options, page=page)
    except OcrTimeout:
        raise
    except OcrError:
        return 0  # too few letters to tell ("Too few characters"), or OSD failed: read the page as it is
    values = {
        key.strip(): value.strip() for key, _, value in (line.partition(":") for line in output.splitlines())
    }
    try:
        rotate = int(values.get("Rotate", "0"))
        confidence = float(values.get("Orientation confidence", "0"))
    except ValueError:
        return 0
    return rotate % 360 if confidence >= MIN_ORIENTATION_CONFIDENCE else 0


def _run(command: list[str], *, options: OcrOptions, page: int) -> str:
    # One thread per Tesseract: a worker reads one page at a time, and Tesseract's own OpenMP threads cost more
    # than they save on a machine whose cores the other workers use.
    environment = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        result = subprocess.run(  # noqa: S603 - the program is checked by check_available, the rest is ours
            command,
            capture_output=True,
            timeout=options.page_seconds,
            check=False,
            env=environment,
        )
    except subprocess.TimeoutExpired as exc:
        raise OcrTimeout(
            f"OCR of page {page} took longer than {options.page_seconds:g} s (KNOWLEDGE_OCR_PAGE_SECONDS); "
            "the document was not indexed."
        ) from exc
    except OSError as exc:
        raise OcrError(f"Tesseract could not be run: {exc}; {INSTALL_HINT}.") from exc
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise OcrError(f"Tesseract failed on page {page}: {message[-1] if message else result.returncode}.")
    return result.stdout.decode("utf-8", errors="replace")


def parse_tsv(tsv: str) -> OcrPage:
    """Paragraphs of lines from Tesseract's TSV output (one row per word, with its confidence and box).

    Words below MIN_WORD_CONFIDENCE are left out: they are what Tesseract makes of dot leaders, rules and specks
    ("cece eee" at 0-20), where real words read at 50 and more. Counted, they still make a page of them noise."""
    lines: dict[tuple[str, str, str, str], list[_Word]] = {}
    for row in _rows(tsv):
        text = (row.get("text") or "").strip()
        try:
            confidence = float(row.get("conf") or -1)
            box = (int(row.get("left") or 0), int(row.get("width") or 0), int(row.get("height") or 0))
        except ValueError:
            continue
        if not text or confidence < 0:
            continue
        key = (
            row.get("page_num", ""),
            row.get("block_num", ""),
            row.get("par_num", ""),
            row.get("line_num", ""),
        )
        lines.setdefault(key, []).append(_Word(text, confidence, *box))
    paragraphs: dict[tuple[str, str, str], list[OcrLine]] = {}
    read = kept = 0
    total = 0.0
    for key, words in lines.items():
        read += len(words)
        texts: list[tuple[str, float]] = []
        for index, word in enumerate(words):
            text = _LEADER.sub("", word.text)
            # The leader's dots drag the confidence of the word they are stuck to down to nothing: judge it alone.
            if word.confidence < MIN_WORD_CONFIDENCE and (text == word.text or not text.isalpha()):
                continue
            if index == 0 and _is_bullet(word, words[1] if len(words) > 1 else None):
                text = "•"
            if text:
                texts.append((text, word.confidence))
        if texts:
            kept += len(texts)
            total += sum(c for _, c in texts)
            paragraphs.setdefault(key[:3], []).append(
                OcrLine(" ".join(t for t, _ in texts), sum(c for _, c in texts) / len(texts))
            )
    # A page where most of what Tesseract found were guesses is noise, however confident the few kept words are.
    confidence = total / kept if kept and kept >= read * MIN_KEPT_SHARE else 0.0
    return OcrPage(list(paragraphs.values()), confidence, kept)


# A run of dots is a table of contents' leader ("Packages........83"): it goes, with the page number stuck to it.
_LEADER = re.compile(r"(?:\.\s?){4,}[\d.\-]*$")
# Tesseract's English model reads a round bullet as one of these letters or signs.
_BULLET_LOOKALIKES = frozenset({"e", "o", "«", "°", "*", "+", "¢", "©", "@", "-", "»"})


@dataclass(frozen=True)
class _Word:
    text: str
    confidence: float
    left: int
    width: int
    height: int


def _is_bullet(word: _Word, following: _Word | None) -> bool:
    """A line's first "word" that is one round blob as wide as high, set apart from the text by more than its width:
    a list bullet, which no English word at a line's start looks like."""
    if word.text not in _BULLET_LOOKALIKES or following is None or word.height == 0:
        return False
    square = 0.7 <= word.width / word.height <= 1.4
    return square and following.left - (word.left + word.width) > word.width


def _rows(tsv: str) -> Iterator[dict[str, str]]:
    # Words may hold quote characters: the TSV is not quoted, so csv must not treat them specially.
    yield from csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE)
