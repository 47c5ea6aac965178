"""Answers (Markdown) to safe HTML, with their citation markers [n] made links to the cited passages."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

import markdown
import nh3
from markdown.extensions import Extension
from markdown.inlinepatterns import InlineProcessor

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "b", "i", "del", "s", "sup", "sub",
    "code", "pre", "blockquote", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td", "a",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
# No images: an answer could load a URL that carries data out (a known attack on chat interfaces).
URL_SCHEMES = {"http", "https", "mailto"}
CITATION_CLASS = "cite"


@dataclass(frozen=True)
class CitationLink:
    url: str
    title: str


class _CitationProcessor(InlineProcessor):
    ANCESTOR_EXCLUDES = ("a",)

    def __init__(self, citations: Mapping[int, CitationLink]) -> None:
        super().__init__(r"\[(\d{1,3})\]")
        self.citations = citations

    def handleMatch(self, m: re.Match[str], data: str) -> tuple[ET.Element | None, int | None, int | None]:
        link = self.citations.get(int(m.group(1)))
        if link is None:
            return None, None, None
        element = ET.Element("a", {"href": link.url, "class": CITATION_CLASS, "title": link.title})
        element.text = f"[{m.group(1)}]"
        return element, m.start(0), m.end(0)


class _CitationExtension(Extension):
    def __init__(self, citations: Mapping[int, CitationLink]) -> None:
        super().__init__()
        self.citations = citations

    def extendMarkdown(self, md: markdown.Markdown) -> None:
        # Raw HTML in an answer is shown as text, never passed through (the sanitizer below is the second line).
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")
        # After code spans (190) and backslash escapes (180), so `[1]` in code and \[1\] stay as written; before
        # reference links (170), which would otherwise read "[1][2]" as a link.
        md.inlinePatterns.register(_CitationProcessor(self.citations), "citation", 115)


def render_markdown(text: str, *, citations: Mapping[int, CitationLink] | None = None) -> str:
    """Sanitized HTML for `text`; each [n] whose n is in `citations` (outside code) links to it."""
    html = markdown.markdown(
        text,
        extensions=["fenced_code", "tables", "sane_lists", "nl2br", _CitationExtension(citations or {})],
        output_format="html",
    )
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        allowed_classes={"a": {CITATION_CLASS}},
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )
