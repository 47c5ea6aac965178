"""Texts people name things with (collections, documents, conversations): what they may hold, in one place."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

# Characters that cannot be seen or that change how the text around them is shown: C0 and C1 controls, and
# Unicode's bidirectional marks, embeddings, overrides and isolates (U+202E makes "gpj.exe" read as "exe.jpg").
INVISIBLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def has_invisible(text: str) -> bool:
    return INVISIBLE.search(text) is not None


def shown(text: str) -> str:
    """`text` safe to print on one line: each invisible character replaced by "?"."""
    return INVISIBLE.sub("?", text)


def validate_visible(text: str) -> None:
    """A model and form validator: no control or text-direction characters in a name."""
    if has_invisible(text):
        raise ValidationError(
            "Control and text-direction characters are not allowed (here: %(shown)s).",
            code="invisible",
            params={"shown": shown(text)},
        )
