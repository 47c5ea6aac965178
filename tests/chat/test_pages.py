import json
import re
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client, RequestFactory
from django.utils import dateformat, timezone

from chat import pipeline
from chat.models import Citation, Conversation, Feedback, Message
from chat.streaming import sse_response
from knowledge import services as knowledge_services
from knowledge.embeddings import MINILM
from knowledge.models import Chunk
from tests.factories import CollectionFactory, UserFactory

pytestmark = pytest.mark.django_db

PAGES = {
    "backup.md": (
        "# Backup and Restore\n\n## SQL dump\n\n"
        "pg_dump makes consistent backups even while the database is being used concurrently. "
        "It does not block other users accessing the database. Restore a dump with psql or pg_restore."
    ),
    "vacuum.md": (
        "# Routine Vacuuming\n\n## Autovacuum\n\n"
        "The autovacuum launcher starts a worker for each database every autovacuum_naptime seconds, "
        "one minute by default. VACUUM FULL rewrites the table and returns disk space to the operating system."
    ),
}
BACKUP_QUESTION = "Can I take a backup while people use the database?"


@pytest.fixture
def manual(django_capture_on_commit_callbacks):
    collection = CollectionFactory(name="PostgreSQL manual", slug="manual", embedding_model=MINILM)
    with django_capture_on_commit_callbacks(execute=True):
        for name, text in PAGES.items():
            knowledge_services.document_add(collection=collection, name=name, content=text.encode())
    return collection


@pytest.fixture
def signed_in(client, reader):
    client.force_login(reader)
    return client


def ask(client, question, follow=False, **fields):
    return client.post("/ask/", {"question": question, **fields}, follow=follow)


def sse_events(response):
    body = b"".join(response.streaming_content).decode()
    return parse_sse(body)


def parse_sse(body):
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def conversation_of(user, **fields):
    conversation = Conversation.objects.create(owner=user, title=fields.pop("title", "A conversation"))
    question = Message.objects.create(
        conversation=conversation, role="user", text=fields.pop("question", "Why?")
    )
    answer = Message.objects.create(
        conversation=conversation,
        role="assistant",
        text=fields.pop("text", "Because."),
        outcome=fields.pop("outcome", "answered"),
        answer_mode=fields.pop("answer_mode", "extractive"),
        trace=fields.pop("trace", {}),
    )
    return conversation, question, answer


# --- Signing in and out -------------------------------------------------------------------------------------


def test_pages_ask_anonymous_visitors_to_sign_in(client):
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/")


def test_signing_in_leads_to_the_conversation_list(client, reader):
    response = client.post(
        "/accounts/login/", {"username": "reader", "password": "a-long-test-password"}, follow=True
    )

    assert response.redirect_chain[-1][0] == "/"
    assert "Your conversations" in response.text
    assert "Sign out" in response.text


def test_signing_out_is_a_post_that_needs_the_csrf_token(reader):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(reader)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', browser.get("/").text).group(1)

    without_token = browser.post("/accounts/logout/")
    with_token = browser.post("/accounts/logout/", {"csrfmiddlewaretoken": token})

    assert without_token.status_code == 403
    assert with_token.status_code == 302
    assert browser.get("/").status_code == 302


# --- The conversation list and the new conversation form -------------------------------------------------------


def test_the_home_page_lists_only_the_users_conversations_newest_first_with_dates(signed_in, reader):
    older, _, _ = conversation_of(reader, title="Older question")
    conversation_of(reader, title="Newer question")
    Conversation.objects.filter(pk=older.pk).update(updated_at=timezone.now() - timedelta(days=2))
    conversation_of(UserFactory(), title="Someone else's question")

    older.refresh_from_db()

    page = signed_in.get("/").text

    assert page.index("Newer question") < page.index("Older question")
    assert "Someone else" not in page
    assert dateformat.format(timezone.localtime(older.updated_at), "M j, Y, H:i") in page


def test_the_collection_picker_shows_only_the_collections_the_user_may_read(signed_in, reader):
    CollectionFactory(name="Public handbook", visibility="public")
    shared = CollectionFactory(name="Team notes", visibility="restricted")
    shared.allowed_users.add(reader)
    CollectionFactory(name="Board minutes", visibility="restricted")

    page = signed_in.get("/").text

    assert "Public handbook" in page
    assert "Team notes" in page
    assert "Board minutes" not in page
    assert 'name="collections"' in page


# --- Asking -------------------------------------------------------------------------------------------------------


def test_asking_without_javascript_redirects_to_the_answer_with_its_citations(signed_in, manual):
    response = ask(signed_in, BACKUP_QUESTION, collections=[manual.pk])

    answer = Message.objects.get(role="assistant")
    assert response.status_code == 302
    assert response["Location"] == f"/conversations/{answer.conversation_id}/#m-{answer.pk}"
    assert list(answer.conversation.collections.all()) == [manual]
    page = signed_in.get(response["Location"]).text
    cited = answer.citations.filter(cited=True).order_by("number").first()
    assert f'<a class="cite" href="/passages/{cited.pk}/"' in page
    assert "pg_dump" in page
    assert "Backup and Restore</a> — Backup and Restore › SQL dump" in page
    assert "Extractive answer — no language model configured" in page
    assert BACKUP_QUESTION in page


def test_a_follow_up_question_is_asked_in_the_same_conversation(signed_in, manual):
    first = ask(signed_in, BACKUP_QUESTION)
    conversation = Message.objects.get(role="assistant").conversation

    follow_up = ask(signed_in, "How do I restore it?", conversation=conversation.pk)

    assert follow_up.status_code == 302
    assert follow_up["Location"].startswith(f"/conversations/{conversation.pk}/#m-")
    assert first["Location"] != follow_up["Location"]
    assert conversation.messages.count() == 4


def test_an_empty_question_is_refused_with_a_message(signed_in, manual):
    response = ask(signed_in, "   ")

    assert response.status_code == 422
    assert "The question is empty." in response.text
    assert not Conversation.objects.exists()


def test_the_streaming_endpoint_sends_server_sent_events_ending_with_the_rendered_answer(
    signed_in, manual, llm_server
):
    response = signed_in.post("/ask/stream/", {"question": BACKUP_QUESTION, "collections": [manual.pk]})

    events = sse_events(response)
    names = [name for name, _ in events]
    start, done = events[0][1], events[-1][1]
    assert response["Content-Type"].startswith("text/event-stream")
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    assert names[0] == "start" and names[-1] == "done"
    assert names.count("token") > 3
    assert start["url"] == f"/conversations/{start['conversation_id']}/"
    streamed = "".join(data["text"] for name, data in events if name == "token")
    assert streamed.strip() == done["message"]["text"]
    assert done["message"]["answer_mode"] == llm_server.model
    citation = Citation.objects.get(message_id=done["message"]["id"], number=1)
    assert f'<a class="cite" href="/passages/{citation.pk}/"' in done["html"]
    assert f"Answered by {llm_server.model}" in done["html"]


def test_under_asgi_the_stream_is_an_async_iterator_of_the_same_events(reader, manual):
    browser = AsyncClient()
    browser.force_login(reader)

    async def stream():
        response = await browser.post("/ask/stream/", {"question": BACKUP_QUESTION})
        chunks = [chunk async for chunk in response.streaming_content]
        return response, chunks

    response, chunks = async_to_sync(stream)()

    assert response.is_async
    assert len(chunks) >= 4  # sent one event at a time, not as one buffered body
    events = parse_sse(b"".join(chunks).decode())
    assert events[0][0] == "start"
    assert events[-1][0] == "done" and "pg_dump" in events[-1][1]["message"]["text"]


def test_an_error_after_the_stream_started_ends_it_with_an_error_event(caplog):
    def events():
        yield "start", {"conversation_id": 1}
        raise RuntimeError("the database went away")

    response = sse_response(RequestFactory().post("/ask/stream/"), events())

    assert sse_events(response) == [
        ("start", {"conversation_id": 1}),
        ("error", {"detail": "Something went wrong while answering. Please try again."}),
    ]
    assert "the database went away" in caplog.text


def test_streaming_refusals_are_json_with_their_status(signed_in, manual, settings):
    settings.CHAT_RATE_LIMIT = 1
    signed_in.post("/ask/stream/", {"question": BACKUP_QUESTION}).getvalue()

    response = signed_in.post("/ask/stream/", {"question": "And restoring?"})

    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert "try again in" in response.json()["detail"]


def test_a_question_the_documents_do_not_answer_says_so(signed_in, manual):
    response = ask(signed_in, "What is the recipe for a chocolate cake?", follow=True)

    page = response.text
    assert 'data-outcome="not_found"' in page
    assert "Not in the knowledge base." in page
    assert pipeline.NOT_FOUND_TEXT in page


def test_a_failing_language_model_is_shown_as_a_warning(signed_in, manual, llm_server):
    llm_server.failure = "500"

    response = ask(signed_in, BACKUP_QUESTION, follow=True)

    answer = Message.objects.get(role="assistant")
    page = response.text
    assert answer.outcome == "failed"
    assert 'class="notice notice-warning answer-body prose" role="alert" data-outcome="failed"' in page
    assert f"The language model {llm_server.model} failed" in page


def test_asking_about_a_collection_the_user_may_not_read_shows_why(signed_in, manual):
    secret = CollectionFactory(name="Board minutes", visibility="restricted")

    response = ask(signed_in, BACKUP_QUESTION, collections=[secret.pk])

    assert response.status_code == 404
    assert f"No collection &#x27;{secret.pk}&#x27; that you may read." in response.text
    assert BACKUP_QUESTION in response.text  # kept in the form
    assert not Conversation.objects.exists()


def test_a_conversation_whose_collection_the_user_lost_access_to_cannot_be_continued(signed_in, reader):
    team = CollectionFactory(name="Team notes", visibility="restricted")
    team.allowed_users.add(reader)
    conversation, _, _ = conversation_of(reader)
    conversation.collections.add(team)
    team.allowed_users.remove(reader)

    page = signed_in.get(f"/conversations/{conversation.pk}/")
    refused = ask(signed_in, "More?", conversation=conversation.pk)

    assert page.status_code == 200
    assert "You may no longer read “Team notes”" in page.text
    assert "data-ask " not in page.text
    assert refused.status_code == 404
    assert "that you may read" in refused.text


def test_asking_too_fast_is_429_with_retry_after(signed_in, manual, settings):
    settings.CHAT_RATE_LIMIT = 1
    ask(signed_in, BACKUP_QUESTION)
    conversation = Conversation.objects.get()

    response = ask(signed_in, "And restoring?", conversation=conversation.pk)

    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert "You can ask 1 questions every" in response.text


def test_another_users_conversation_is_404_everywhere(signed_in):
    theirs, _, answer = conversation_of(UserFactory())

    assert signed_in.get(f"/conversations/{theirs.pk}/").status_code == 404
    assert ask(signed_in, "More?", conversation=theirs.pk).status_code == 404
    assert signed_in.post("/ask/stream/", {"question": "More?", "conversation": theirs.pk}).status_code == 404
    assert signed_in.post(f"/conversations/{theirs.pk}/rename/", {"title": "Mine"}).status_code == 404
    assert signed_in.post(f"/conversations/{theirs.pk}/delete/").status_code == 404
    assert signed_in.post(f"/messages/{answer.pk}/feedback/", {"rating": 1}).status_code == 404
    assert Conversation.objects.filter(pk=theirs.pk, title="A conversation").exists()
    assert not Feedback.objects.exists()


def test_forms_without_the_csrf_token_are_refused(reader):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(reader)

    response = browser.post("/ask/", {"question": "Anything?"})

    assert response.status_code == 403


# --- Sources ------------------------------------------------------------------------------------------------------


def test_a_citation_opens_its_passage_highlighted_in_the_document_with_a_download_link(signed_in, manual):
    ask(signed_in, BACKUP_QUESTION)
    citation = Citation.objects.filter(title="Backup and Restore").get()

    response = signed_in.get(f"/passages/{citation.pk}/")

    page = response.text
    assert response.status_code == 200
    assert '<mark id="passage">' in page
    highlighted = re.search(r'<mark id="passage">(.*?)</mark>', page, re.DOTALL).group(1)
    assert "pg_dump makes consistent backups" in highlighted
    assert "Backup and Restore › SQL dump" in page
    assert f'href="/api/documents/{citation.document_id}/download/"' in page
    assert signed_in.get(f"/api/documents/{citation.document_id}/download/").status_code == 200


def test_the_passage_shows_the_text_around_it(signed_in, reader):
    collection = CollectionFactory(embedding_model="hashing-384")
    added = knowledge_services.document_import(
        collection=collection,
        name="long.md",
        content=("# Long\n\n" + " ".join(f"Sentence number {n} of the manual." for n in range(400))).encode(),
        index_now=True,
    )
    chunk = Chunk.objects.filter(document=added.document).order_by("position")[2]
    _, _, answer = conversation_of(reader)
    citation = Citation.objects.create(
        message=answer, number=1, chunk=chunk, document=added.document, title="Long", quote=chunk.text,
        start_offset=chunk.start_offset, end_offset=chunk.end_offset,
    )  # fmt: skip

    page = signed_in.get(f"/passages/{citation.pk}/").text

    before, after = page.split('<mark id="passage">')[0], page.split("</mark>")[1]
    assert re.search(r"Sentence number \d+ of the manual.\s*</span>", before)
    assert re.search(r'<span class="context">\s*Sentence number \d+', after)


def test_the_passage_of_another_users_citation_is_404(signed_in, manual):
    other = UserFactory()
    other_client = Client()
    other_client.force_login(other)
    ask(other_client, BACKUP_QUESTION)
    citation = Citation.objects.first()

    response = signed_in.get(f"/passages/{citation.pk}/")

    assert response.status_code == 404


def test_the_passage_is_404_once_the_user_may_no_longer_read_the_collection(signed_in, reader, manual):
    ask(signed_in, BACKUP_QUESTION)
    citation = Citation.objects.first()
    manual.visibility = "restricted"
    manual.save()

    response = signed_in.get(f"/passages/{citation.pk}/")

    assert response.status_code == 404


def test_after_the_document_changed_the_passage_shows_the_stored_quote_and_says_so(
    signed_in, manual, django_capture_on_commit_callbacks
):
    ask(signed_in, BACKUP_QUESTION)
    citation = Citation.objects.get(title="Backup and Restore")
    with django_capture_on_commit_callbacks(execute=True):
        knowledge_services.document_add(
            collection=manual, name="backup.md", content=b"# Backup and Restore\n\nUse pg_basebackup."
        )

    response = signed_in.get(f"/passages/{citation.pk}/")

    citation.refresh_from_db()
    assert citation.chunk_id is None
    assert response.status_code == 200
    assert "The document has changed since this answer was given" in response.text
    assert "pg_dump makes consistent backups" in response.text


# --- Feedback, rename, delete --------------------------------------------------------------------------------------


def test_feedback_is_stored_and_can_be_changed_with_a_comment(signed_in, reader):
    _, _, answer = conversation_of(reader)

    up = signed_in.post(f"/messages/{answer.pk}/feedback/", {"rating": "1"})
    down = signed_in.post(f"/messages/{answer.pk}/feedback/", {"rating": "-1", "comment": "Too short."})

    feedback = Feedback.objects.get(message=answer, user=reader)
    assert up.status_code == down.status_code == 302
    assert down["Location"] == f"/conversations/{answer.conversation_id}/#m-{answer.pk}"
    assert (feedback.rating, feedback.comment) == (-1, "Too short.")
    page = signed_in.get(down["Location"]).text
    assert 'value="-1" class="thumb" aria-pressed="true"' in page
    assert "Too short.</textarea>" in page


def test_feedback_sent_by_script_gets_json(signed_in, reader):
    _, _, answer = conversation_of(reader)

    response = signed_in.post(
        f"/messages/{answer.pk}/feedback/", {"rating": "1"}, headers={"accept": "application/json"}
    )

    assert response.json() == {"message_id": answer.pk, "rating": 1, "comment": ""}
    assert Feedback.objects.get().rating == 1


def test_feedback_must_be_up_or_down(signed_in, reader):
    _, _, answer = conversation_of(reader)

    response = signed_in.post(f"/messages/{answer.pk}/feedback/", {"rating": "5"})

    assert response.status_code == 422
    assert not Feedback.objects.exists()


def test_renaming_a_conversation_changes_its_title(signed_in, reader):
    conversation, _, _ = conversation_of(reader)

    response = signed_in.post(f"/conversations/{conversation.pk}/rename/", {"title": "  Backups  "})

    conversation.refresh_from_db()
    assert response.status_code == 302
    assert conversation.title == "Backups"


def test_a_blank_title_is_refused(signed_in, reader):
    conversation, _, _ = conversation_of(reader)

    response = signed_in.post(f"/conversations/{conversation.pk}/rename/", {"title": "   "})

    conversation.refresh_from_db()
    assert response.status_code == 422
    assert conversation.title == "A conversation"


def test_deleting_a_conversation_removes_it_and_returns_to_the_list(signed_in, reader):
    conversation, _, _ = conversation_of(reader, title="Backups")

    response = signed_in.post(f"/conversations/{conversation.pk}/delete/", follow=True)

    assert response.redirect_chain == [("/", 302)]
    assert "Deleted “Backups”." in response.text
    assert not Conversation.objects.exists()


# --- Staff: trace and analytics -------------------------------------------------------------------------------------


def test_staff_see_the_trace_of_an_answer_and_readers_do_not(client, reader, staff_user):
    trace = {
        "rewritten_question": "How do backups work?",
        "timings": {"rewrite": 0.001, "embed": 0.013, "search": 0.02, "generate": 0.5, "total": 0.6},
        "retrieved": [{"chunk_id": 7, "document_id": 3, "score": 0.03, "dense_rank": 1, "dense_similarity": 0.61,
                       "lexical_rank": 2, "lexical_score": 0.2, "rerank_score": None}],
        "tokens": {"prompt": 321, "completion": 45},
        "error": {"kind": "timeout", "message": "The language model did not answer in time."},
    }  # fmt: skip
    theirs, _, _ = conversation_of(reader, trace=trace)
    mine, _, _ = conversation_of(staff_user, trace=trace)

    client.force_login(reader)
    as_reader = client.get(f"/conversations/{theirs.pk}/").text
    client.force_login(staff_user)
    as_staff = client.get(f"/conversations/{mine.pk}/").text

    assert "<summary>Trace</summary>" not in as_reader
    assert "<summary>Trace</summary>" in as_staff
    assert "How do backups work?" in as_staff
    timings = re.search(r'<table class="trace-timings">.*?</table>', as_staff, re.DOTALL).group(0)
    assert re.findall(r"<th scope=\"col\">(\w+)</th>", timings) == [
        "rewrite",
        "embed",
        "search",
        "generate",
        "total",
    ]
    assert "13 ms" in timings and "500 ms" in timings
    assert "prompt 321, completion 45" in as_staff
    assert "timeout: The language model did not answer in time." in as_staff
    assert "<td>0.61</td>" in as_staff


def test_analytics_counts_questions_outcomes_feedback_and_latency(client, staff_user, reader):
    for index, (outcome, total) in enumerate(
        [("answered", 0.1), ("answered", 0.2), ("not_found", 0.3), ("failed", 0.4), ("answered", 0.5)]
    ):
        _, _, answer = conversation_of(
            reader,
            outcome=outcome,
            text=f"Answer {index}",
            trace={"timings": {"total": total, "search": 0.01}},
        )
        if index < 3:
            Feedback.objects.create(
                message=answer, user=reader, rating=1 if index else -1, comment=f"c{index}"
            )
    old_question = Message.objects.filter(role="user").first()
    Message.objects.filter(pk=old_question.pk).update(created_at=timezone.now() - timedelta(days=45))
    client.force_login(staff_user)

    response = client.get("/analytics/")

    analytics = response.context["analytics"]
    latency = {row.stage: row for row in analytics.latency}
    assert response.status_code == 200
    assert analytics.questions == 4
    assert analytics.per_day[-1].count == 4 and len(analytics.per_day) == 30
    assert (analytics.answers, analytics.not_found, analytics.failed) == (5, 1, 1)
    assert (analytics.helpful, analytics.not_helpful) == (2, 1)
    assert latency["total"].count == 5
    assert latency["total"].p50_ms == pytest.approx(300)
    assert latency["total"].p95_ms == pytest.approx(480)
    assert latency["rerank"].count == 0 and latency["rerank"].p50_ms is None
    page = response.text
    assert "20.0 %" in page  # not found, and failed: 1 of 5
    assert "66.7 %" in page  # helpful: 2 of 3
    assert "<svg" in page
    assert "“c0”" in page and "Answer 0" in page and "Why?" in page


def test_analytics_is_for_staff_only(client, reader):
    anonymous = client.get("/analytics/")
    client.force_login(reader)
    as_reader = client.get("/analytics/")

    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    assert as_reader.status_code == 404


# --- Untrusted text ---------------------------------------------------------------------------------------------


def test_markup_in_an_answer_cannot_run_script(signed_in, reader):
    conversation, _, _ = conversation_of(
        reader,
        text="Fine <script>alert('answer')</script> <img src=x onerror=alert(1)> <b onclick=alert(2)>bold</b> "
        "[link](javascript:alert(3))",
    )

    page = signed_in.get(f"/conversations/{conversation.pk}/").text

    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;answer&#x27;)&lt;/script&gt;" in page or "&lt;script&gt;" in page
    assert "<img" not in page
    assert "<b onclick" not in page
    assert "javascript:" not in page


def test_markup_in_a_question_or_a_document_is_escaped(signed_in, reader):
    collection = CollectionFactory(embedding_model="hashing-384")
    added = knowledge_services.document_import(
        collection=collection,
        name="evil.md",
        content=b"# Evil\n\nAutovacuum runs <script>alert('doc')</script> every minute.",
        index_now=True,
    )
    chunk = Chunk.objects.get(document=added.document)
    _, _, answer = conversation_of(reader, question="<script>alert('question')</script>")
    citation = Citation.objects.create(
        message=answer, number=1, chunk=chunk, document=added.document, title="<script>alert('title')</script>",
        quote=chunk.text, start_offset=chunk.start_offset, end_offset=chunk.end_offset,
    )  # fmt: skip

    conversation_page = signed_in.get(f"/conversations/{answer.conversation_id}/").text
    passage_page = signed_in.get(f"/passages/{citation.pk}/").text

    for page in (conversation_page, passage_page):
        assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;doc&#x27;)" in passage_page


def test_an_answer_whose_reader_went_away_is_still_made_and_stored(reader, manual, llm_server):
    from chat import services

    events = services.question_ask_stream(user=reader, question=BACKUP_QUESTION, collection_ids=[manual.pk])
    assert next(events).kind == "start"
    events.close()  # the client disconnected after the first event

    answer = Message.objects.get(role="assistant", conversation__owner=reader)
    assert "pg_dump" in answer.text and answer.citations.filter(cited=True).exists()


def test_a_refused_question_leaves_no_conversation_behind(signed_in, reader, manual, settings):
    settings.CHAT_RATE_LIMIT = 1
    assert ask(signed_in, BACKUP_QUESTION).status_code == 302
    assert ask(signed_in, BACKUP_QUESTION).status_code == 429
    assert signed_in.post("/ask/", {"question": "x", "collections": "999999"}).status_code == 429
    assert Conversation.objects.filter(owner=reader).count() == 1
