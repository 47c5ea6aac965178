"""What the chat templates need to show an answer: its safe HTML, its mode, its trace in readable units."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from chat.models import Message
from chat.rendering import CitationLink, render_markdown
from chat.selectors import LATENCY_STAGES, DayCount
from chat.services import WITHHELD_ANSWER

register = template.Library()

EXTRACTIVE_LABEL = "Extractive answer — no language model configured"


@register.filter
def answer_html(message: Message) -> SafeString:
    """The answer's Markdown as sanitized HTML, its [n] linked to the cited passages; a notice instead when it
    cites a document the reader may no longer read."""
    all_citations = list(message.citations.all())
    if any(citation.withheld and citation.cited for citation in all_citations):
        return format_html("<p>{}</p>", WITHHELD_ANSWER)
    citations = {
        citation.number: CitationLink(
            url=reverse("chat:passage", args=[citation.pk]),
            title=" — ".join(part for part in (citation.title, citation.section) if part),
        )
        for citation in all_citations
        if not citation.withheld
    }
    return mark_safe(render_markdown(message.text, citations=citations))  # noqa: S308 (sanitized by nh3)


@register.filter
def answer_mode_label(message: Message) -> str:
    mode = message.answer_mode
    if mode == "extractive":
        return EXTRACTIVE_LABEL
    if not mode or mode == "none":
        return "No answer was generated: nothing relevant enough was found"
    if message.outcome == Message.Outcome.FAILED:
        return f"The language model {mode} failed"
    return f"Answered by {mode}"


@register.filter
def milliseconds(seconds: Any) -> str:
    """Seconds (from a trace) as whole milliseconds."""
    try:
        return f"{float(seconds) * 1000:,.0f} ms"
    except (TypeError, ValueError):
        return "—"


@register.filter
def stage_timings(trace: dict[str, Any]) -> list[tuple[str, Any]]:
    """A trace's timings in pipeline order (the database does not keep the order of JSON keys)."""
    timings = trace.get("timings") or {}
    order = {stage: index for index, stage in enumerate(LATENCY_STAGES)}
    return sorted(timings.items(), key=lambda item: (order.get(item[0], len(order) - 1), item[0]))


@register.filter
def percent(share: float | None) -> str:
    return "—" if share is None else f"{share * 100:.1f} %"


@register.filter
def own_rating(message: Message) -> int:
    """The signed-in user's rating of an answer (prefetched by the selectors as `own_feedback`), 0 if none."""
    given = getattr(message, "own_feedback", None)
    return given[0].rating if given else 0


@register.filter
def own_comment(message: Message) -> str:
    given = getattr(message, "own_feedback", None)
    return given[0].comment if given else ""


@register.simple_tag
def questions_chart(per_day: list[DayCount]) -> SafeString:
    """An inline SVG bar chart of questions per day (no script, no outside resource)."""
    busiest = max((day.count for day in per_day), default=0) or 1
    bars = []
    for index, day in enumerate(per_day):
        height = round(day.count / busiest * 96, 2)
        bars.append(
            format_html(
                '<rect class="bar" x="{}" y="{}" width="8" height="{}"><title>{}: {}</title></rect>',
                index * 10 + 1,
                100 - height,
                height,
                day.day.strftime("%b %d"),
                day.count,
            )
        )
    return format_html(
        '<svg class="bar-chart" viewBox="0 0 {} 100" preserveAspectRatio="none" role="img" aria-label="{}">'
        '<line class="axis" x1="0" y1="100" x2="{}" y2="100"></line>{}</svg>',
        len(per_day) * 10,
        f"Questions per day over the last {len(per_day)} days",
        len(per_day) * 10,
        mark_safe("".join(bars)),  # noqa: S308 (each bar built by format_html)
    )
