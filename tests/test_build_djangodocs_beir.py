import importlib.util
import json
import sys
from pathlib import Path

import pytest

BUILDER = Path(__file__).resolve().parents[1] / "scripts" / "build_djangodocs_beir.py"

PAGE = """<!DOCTYPE html>
<html><head><title>{title} &#8212; Django 3.2.25 documentation</title></head><body>
<div id="hd"><h1><a href="{up}index.html">Django 3.2.25 documentation</a></h1></div>
<div id="bd"><div id="yui-main"><div class="yui-b"><div class="yui-g">
{body}
</div></div></div>
<div class="yui-b" id="sidebar"><h3>Browse</h3><a href="{up}genindex.html">Index</a></div></div>
</body></html>
"""

FAQ_BODY = """<div class="section" id="s-faq-general"><h1>FAQ: General<a class="headerlink" href="#faq-general">¶</a></h1>
<div class="section" id="s-queries">
<h2>How do I see the rows of a table it’s holding?<a class="headerlink" href="#queries">¶</a></h2>
<p>Read <a class="reference internal" href="../topics/db/queries.html#retrieving-objects">making queries</a>,
<a class="reference internal" href="../topics/db/queries.html">again</a>, the
<a class="reference internal" href="../genindex.html">index</a>, the <a href="index.html#top">FAQ</a> and
<a class="reference external" href="https://example.com/queries.html">a blog</a>.</p>
</div>
<div class="section" id="s-stable">
<h2>Is Django stable?<a class="headerlink" href="#stable">¶</a></h2>
<p>Yes, see <a class="reference external" href="https://www.djangoproject.com/">the site</a> and
<a class="reference internal" href="#queries">above</a>.</p>
</div>
</div>
"""

DOC_BODY = """<div class="section" id="s-making-queries"><h1>Making queries<a class="headerlink" href="#m">¶</a></h1>
<p>Once you have created your data models, Django gives you a database-abstraction API.</p>
</div>
"""


@pytest.fixture
def builder(monkeypatch):
    # scripts/ is not a package; the module is registered so that its dataclasses can resolve their annotations.
    spec = importlib.util.spec_from_file_location("build_djangodocs_beir", BUILDER)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def docs(tmp_path):
    html = tmp_path / "html"
    for path, title, body in (
        ("faq/general.html", "FAQ: General", FAQ_BODY),
        ("topics/db/queries.html", "Making queries", DOC_BODY),
        ("genindex.html", "Index", "<h1>Index</h1><a href='topics/db/queries.html'>queries</a>"),
    ):
        page = html / path
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(PAGE.format(title=title, up="../" * path.count("/"), body=body), encoding="utf-8")
    return html


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_builder_judges_faq_questions_by_the_corpus_pages_their_answers_link_to(
    builder, docs, tmp_path, capsys
):
    out = tmp_path / "beir"

    code = builder.main(["--source", str(docs), "--out", str(out)])

    assert code == 0
    assert _rows(out / "corpus.jsonl") == [
        {
            "_id": "topics/db/queries.html",
            "title": "Making queries",
            "file": str((docs / "topics/db/queries.html").resolve()),
        }
    ]
    assert _rows(out / "queries.jsonl") == [
        {"_id": "faq-001", "text": "How do I see the rows of a table it's holding?"}
    ]
    assert (out / "qrels" / "test.tsv").read_text(encoding="utf-8") == (
        "query-id\tcorpus-id\tscore\nfaq-001\ttopics/db/queries.html\t1\n"
    )
    printed = capsys.readouterr().out
    assert "corpus: 1 pages (2 left out" in printed
    assert "dropped: 1 questions whose answer links to no corpus page" in printed


def test_headings_that_are_not_sentences_are_left_out_and_subsections_keep_their_own_links(builder):
    html = """<div id="yui-main"><div class="section"><h1>Troubleshooting</h1>
    <div class="section"><h2>Miscellaneous<a class="headerlink" href="#m">¶</a></h2>
    <p><a href="../ref/intro.html">intro</a></p>
    <div class="section"><h3>I’m getting an error. What am I doing wrong?</h3>
    <p><a href="../ref/unicode.html#x">Unicode</a></p></div></div></div></div>"""

    questions, labels = builder.read_questions(html, page="faq/troubleshooting.html")

    assert labels == ["Miscellaneous"]
    assert questions == [
        builder.Question(
            page="faq/troubleshooting.html",
            text="I'm getting an error. What am I doing wrong?",
            links=("ref/unicode.html",),
        )
    ]
