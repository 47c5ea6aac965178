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


class CitationFilter:
    """Checks citations in a text that arrives in pieces (a stream): valid ones pass, invalid ones are dropped,
    and a piece that might be the start of a citation is held back until it is known."""

    _PARTIAL = re.compile(r"\[[\d\s,;–-]*")

    def __init__(self, *, valid: set[int]) -> None:
        self.valid = valid
        self._pending = ""

    def feed(self, piece: str) -> str:
        self._pending += piece
        out: list[str] = []
        while self._pending:
            start = self._pending.find("[")
            if start == -1:
                out.append(self._pending)
                self._pending = ""
                break
            out.append(self._pending[:start])
            rest = self._pending[start:]
            match = _CITATION.match(rest)
            if match:
                out.append("".join(f"[{n}]" for n in _numbers(match.group(1)) if n in self.valid))
                self._pending = rest[match.end() :]
                continue
            if self._PARTIAL.fullmatch(rest) and len(rest) < 24:
                self._pending = rest  # maybe the start of a citation: wait for the next piece
                break
            out.append("[")
            self._pending = rest[1:]
        return "".join(out)

    def flush(self) -> str:
        rest, self._pending = self._pending, ""
        return rest
