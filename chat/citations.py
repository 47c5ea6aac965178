"""Citations in an answer's text: found, checked against the sources that were given, cleaned."""

from __future__ import annotations

import re
from dataclasses import dataclass

# [1], [1, 2], [1][2], [1-2] are all read; anything else in brackets is left alone.
_CITATION = re.compile(r"\[(\d+(?:\s*[,;–-]\s*\d+)*)\]")


@dataclass(frozen=True)
class CheckedText:
    text: str
    cited: list[int]  # the valid numbers, in order of first appearance
    removed: list[int]  # numbers that pointed at no given source


def check_citations(text: str, *, valid: set[int]) -> CheckedText:
    """Keep citations of sources in `valid`, drop the rest (and the brackets they leave empty)."""
    cited: list[int] = []
    removed: list[int] = []

    def replace(match: re.Match[str]) -> str:
        numbers = _numbers(match.group(1))
        kept = [n for n in numbers if n in valid]
        for number in numbers:
            bucket = cited if number in valid else removed
            if number not in bucket:
                bucket.append(number)
        return "".join(f"[{n}]" for n in kept)

    cleaned = _CITATION.sub(replace, text)
    cleaned = re.sub(r"[ \t]+([.,;:!?])", r"\1", cleaned)
    cleaned = re.sub(r"[ \t]{2,}", " ", cleaned)
    return CheckedText(text=cleaned.strip(), cited=cited, removed=removed)


def _numbers(group: str) -> list[int]:
    numbers: list[int] = []
    for part in re.split(r"\s*[,;]\s*", group):
        bounds = re.split(r"\s*[–-]\s*", part)
        if len(bounds) == 2 and bounds[0].isdigit() and bounds[1].isdigit():
            low, high = int(bounds[0]), int(bounds[1])
            numbers.extend(range(low, high + 1) if 0 < high - low < 20 else [low, high])
        elif part.isdigit():
            numbers.append(int(part))
    return numbers
