from html.parser import HTMLParser

from chat.rendering import CitationLink, render_markdown

SOURCES = {
    1: CitationLink(url="/passages/11/", title="Backup and Restore"),
    2: CitationLink(url="/passages/12/", title='Routine "Vacuuming" <draft>'),
}


def cite(number, url, title):
    return f'<a class="cite" href="{url}" title="{title}" rel="noopener noreferrer nofollow">[{number}]</a>'


def elements(html):
    """The (tag, attributes) of every element in `html`, as a browser's parser sees them."""
    found = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, dict(attrs)))

    Collector().feed(html)
    return found


def test_markdown_becomes_html():
    html = render_markdown(
        "# Title\n\nSome **bold** and *italic* text.\n\n- one\n- two\n\n1. first\n2. second"
    )

    assert "<h1>Title</h1>" in html
    assert "<strong>bold</strong>" in html and "<em>italic</em>" in html
    assert "<ul>\n<li>one</li>\n<li>two</li>\n</ul>" in html
    assert "<ol>\n<li>first</li>" in html


def test_tables_and_single_line_breaks_are_kept():
    html = render_markdown("| a | b |\n|---|---|\n| 1 | 2 |\n\nfirst line\nsecond line")

    assert "<table>" in html and "<td>1</td>" in html
    assert "first line<br>\nsecond line" in html


def test_citation_markers_become_links_to_their_passages():
    html = render_markdown(
        "pg_dump works while the database is in use [1][2]. Really [2].", citations=SOURCES
    )

    assert cite(1, "/passages/11/", "Backup and Restore") in html
    assert html.count('href="/passages/12/"') == 2
    assert 'title="Routine &quot;Vacuuming&quot; &lt;draft&gt;"' in html


def test_a_marker_without_a_source_stays_text():
    html = render_markdown("Nothing to see [3].", citations=SOURCES)

    assert html == "<p>Nothing to see [3].</p>"


def test_markers_in_code_are_left_alone():
    html = render_markdown(
        "Use `arr[1]` here [1].\n\n```python\nvalues[1] = 2  # [2]\n```", citations=SOURCES
    )

    assert "<code>arr[1]</code>" in html
    assert "values[1] = 2  # [2]" in html
    assert html.count('class="cite"') == 1


def test_escaped_brackets_and_links_are_not_citations():
    html = render_markdown(
        r"Literally \[1\], or [see the manual](https://example.org/docs [1]).", citations=SOURCES
    )

    assert "Literally [1]" in html
    assert 'class="cite"' not in html


def test_script_tags_and_event_handlers_cannot_survive():
    html = render_markdown(
        '<script>alert(1)</script>\n\nHi <b onclick="alert(2)">there</b> <img src=x onerror=alert(3)>\n\n'
        '<div style="position:fixed">overlay</div>'
    )

    tags = elements(html)
    assert {tag for tag, _ in tags} == {"p"}
    assert not [name for _, attributes in tags for name in attributes]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown as the text it is


def test_dangerous_links_and_images_are_removed():
    html = render_markdown(
        "[click](javascript:alert(1)) and ![pixel](https://tracker.example/p.png?q=secret)"
    )

    assert "javascript:" not in html
    assert "img" not in {tag for tag, _ in elements(html)}
    assert "tracker.example" not in html


def test_ordinary_links_are_kept_and_marked_as_external():
    html = render_markdown("See [the manual](https://www.postgresql.org/docs/).")

    assert (
        '<a href="https://www.postgresql.org/docs/" rel="noopener noreferrer nofollow">the manual</a>' in html
    )


def test_an_answer_cannot_forge_a_citation_link():
    html = render_markdown('<a class="cite" href="https://evil.example/">[1]</a>', citations=SOURCES)

    links = [attributes for tag, attributes in elements(html) if tag == "a"]
    assert links == [
        {
            "class": "cite",
            "href": "/passages/11/",
            "title": "Backup and Restore",
            "rel": "noopener noreferrer nofollow",
        }
    ]


def test_code_blocks_are_escaped_not_rendered():
    html = render_markdown("```html\n<script>alert('x')</script>\n```")

    assert "<pre><code" in html
    assert "&lt;script&gt;alert('x')&lt;/script&gt;" in html or "&lt;script&gt;alert(&#x27;x&#x27;)" in html
