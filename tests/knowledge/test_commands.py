import pytest
from django.core.management import call_command

from knowledge.models import Collection, Document

pytestmark = pytest.mark.django_db


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "docs"
    (root / "guide").mkdir(parents=True)
    (root / "guide" / "intro.md").write_text("# Intro\n\nWelcome to the guide.")
    (root / "guide" / "setup.html").write_text(
        "<html><body><h1>Setup</h1><p>Run the installer.</p></body></html>"
    )
    (root / "notes.txt").write_text("Plain notes about the system.")
    (root / "empty.txt").write_text("")
    (root / "style.css").write_text("body { color: red }")
    (root / ".hidden.md").write_text("# Hidden")
    return root


def test_ingest_walks_folders_and_reports_failures_with_a_nonzero_exit(folder, capsys, settings):
    settings.KNOWLEDGE_EMBEDDING_MODEL = "hashing-384"

    with pytest.raises(SystemExit) as exit_info:
        call_command("ingest", str(folder), collection="docs", public=True)

    output = capsys.readouterr().out
    assert exit_info.value.code == 1
    assert "docs: 3 added, 0 updated, 0 unchanged, 1 failed, 1 skipped" in output
    # Refused before it is stored, as every entry point refuses an empty file.
    assert "FAILED empty.txt: empty.txt is empty (0 bytes)" in output
    assert not Document.objects.filter(source_name="empty.txt").exists()
    collection = Collection.objects.get(slug="docs")
    assert collection.visibility == Collection.Visibility.PUBLIC
    assert set(
        Document.objects.filter(status=Document.Status.READY).values_list("source_name", flat=True)
    ) == {
        "guide/intro.md",
        "guide/setup.html",
        "notes.txt",
    }


def test_ingest_twice_changes_nothing_and_succeeds(folder, capsys, settings):
    settings.KNOWLEDGE_EMBEDDING_MODEL = "hashing-384"
    (folder / "empty.txt").unlink()
    call_command("ingest", str(folder), collection="docs")
    capsys.readouterr()

    call_command("ingest", str(folder), collection="docs")

    assert "docs: 0 added, 0 updated, 3 unchanged, 0 failed" in capsys.readouterr().out
    assert Document.objects.count() == 3


def test_ingest_in_the_background_names_a_refused_file_queues_the_rest_and_exits_nonzero(
    folder, capsys, settings
):
    settings.KNOWLEDGE_EMBEDDING_MODEL = "hashing-384"
    settings.KNOWLEDGE_MAX_UPLOAD_BYTES = 1000
    (folder / "empty.txt").unlink()
    (folder / "guide" / "large.md").write_text("# Large\n\n" + "x" * 5000)

    with pytest.raises(SystemExit) as exit_info:
        call_command("ingest", str(folder), collection="docs", background=True, no_wait=True)

    output = capsys.readouterr().out
    assert exit_info.value.code == 1
    assert "docs: 3 added, 0 updated, 0 unchanged, 1 failed, 1 skipped" in output
    assert "FAILED guide/large.md: guide/large.md is larger than the limit of 1,000 bytes." in output
    assert set(Document.objects.values_list("source_name", "status")) == {
        ("guide/intro.md", Document.Status.PENDING),
        ("guide/setup.html", Document.Status.PENDING),
        ("notes.txt", Document.Status.PENDING),
    }


def test_load_demo_names_the_pages_it_refused_and_adds_the_others(capsys, settings):
    from django.core.management import CommandError

    settings.KNOWLEDGE_EMBEDDING_MODEL = "hashing-384"
    settings.KNOWLEDGE_MAX_UPLOAD_BYTES = 10_000  # three of the twelve pages are smaller

    with pytest.raises(CommandError) as refused:
        call_command("load_demo")

    assert "3 added, 0 updated, 0 unchanged, 9 not added." in capsys.readouterr().out
    assert "Not added: backup-dump.html is 19,414 bytes; the limit is 10,000 bytes." in str(refused.value)
    assert "using-explain.html is 49,000 bytes" in str(refused.value)
    assert set(Document.objects.values_list("source_name", flat=True)) == {
        "indexes-multicolumn.html",
        "mvcc-intro.html",
        "tutorial-transactions.html",
    }


def test_load_demo_is_idempotent(capsys, settings):
    settings.KNOWLEDGE_EMBEDDING_MODEL = "hashing-384"
    call_command("load_demo")
    first = Document.objects.count()

    call_command("load_demo")

    assert first == 12
    assert Document.objects.count() == 12
    assert "0 added, 0 updated, 12 unchanged" in capsys.readouterr().out
