"""The chat pages. Each view parses the request, makes one call into chat.services or chat.selectors, and renders
the result or the domain error. Every read goes through a selector scoped to the signed-in user, so another
user's conversation, answer or source is a 404 (the selector's ObjectNotFound, which core.middleware turns into
the site's 404 page).

Asking works without JavaScript (a form post, then a redirect to the answer); chat.js streams the answer instead
from `ask_stream`, which takes the same form."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from chat import selectors, services
from chat.forms import AskForm, FeedbackForm, RenameForm
from chat.models import Conversation, Message
from chat.streaming import page_sse
from core.api_errors import status_for
from core.errors import DomainError, InvalidInput, RateLimited


def _with_retry_after(response: HttpResponse, exc: DomainError) -> HttpResponse:
    if isinstance(exc, RateLimited):
        response["Retry-After"] = str(exc.retry_after)
    return response


def _first_error(form: AskForm | FeedbackForm | RenameForm) -> str:
    return next((str(error) for errors in form.errors.values() for error in errors), "The form is not valid.")


def _own_conversation(request: HttpRequest, conversation_id: int) -> Conversation:
    return selectors.conversation_get(user=request.user, conversation_id=conversation_id)


def _answer_url(message: Message) -> str:
    return f"{reverse('chat:conversation', args=[message.conversation_id])}#m-{message.pk}"


def _wants_json(request: HttpRequest) -> bool:
    return request.headers.get("Accept", "").startswith("application/json")


# --- Pages ------------------------------------------------------------------------------------------------------


def _home_page(
    request: HttpRequest, *, form: AskForm | None = None, error: str = "", status: int = 200
) -> HttpResponse:
    overview = selectors.conversation_overview(user=request.user)
    form = form or AskForm()
    selected = getattr(form, "cleaned_data", {}).get("collections", [])
    return render(
        request,
        "chat/home.html",
        {
            "overview": overview,
            "conversations": overview.conversations,
            "question": form.data.get("question", "") if form.is_bound else "",
            "selected": selected,
            "error": error,
            "max_question_chars": services.MAX_QUESTION_CHARS,
        },
        status=status,
    )


def _conversation_page(
    request: HttpRequest, conversation_id: int, *, question: str = "", error: str = "", status: int = 200
) -> HttpResponse:
    thread = selectors.conversation_thread(user=request.user, conversation_id=conversation_id)
    return render(
        request,
        "chat/conversation.html",
        {
            "thread": thread,
            "conversation": thread.conversation,
            "conversations": thread.conversations,
            "question": question,
            "error": error,
            "max_question_chars": services.MAX_QUESTION_CHARS,
        },
        status=status,
    )


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return _home_page(request)


@login_required
@require_GET
def conversation(request: HttpRequest, conversation_id: int) -> HttpResponse:
    return _conversation_page(request, conversation_id)


# --- Asking -----------------------------------------------------------------------------------------------------


@login_required
@require_POST
def ask(request: HttpRequest) -> HttpResponse:
    """Ask without JavaScript: the whole answer is made, then the browser is sent to it (post/redirect/get)."""
    form = AskForm(request.POST)
    if not form.is_valid():
        return _home_page(request, form=form, error=_first_error(form), status=422)
    conversation_id = form.cleaned_data["conversation"]
    conversation = _own_conversation(request, conversation_id) if conversation_id else None
    try:
        asked = services.question_ask(
            user=request.user,
            question=form.cleaned_data["question"],
            conversation=conversation,
            collection_ids=form.cleaned_data["collections"],
        )
    except DomainError as exc:
        if conversation is None:
            page = _home_page(request, form=form, error=exc.message, status=status_for(exc))
        else:
            page = _conversation_page(
                request,
                conversation.pk,
                question=form.cleaned_data["question"],
                error=exc.message,
                status=status_for(exc),
            )
        return _with_retry_after(page, exc)
    return redirect(_answer_url(asked.answer))


def _json_error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"detail": message}, status=status)


@login_required
@require_POST
def ask_stream(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """The same form as `ask`, answered as Server-Sent Events; errors found before answering are JSON."""
    form = AskForm(request.POST)
    if not form.is_valid():
        return _json_error(_first_error(form), 422)
    try:
        conversation = (
            selectors.conversation_get(user=request.user, conversation_id=form.cleaned_data["conversation"])
            if form.cleaned_data["conversation"]
            else None
        )
        events = services.question_ask_stream(
            user=request.user,
            question=form.cleaned_data["question"],
            conversation=conversation,
            collection_ids=form.cleaned_data["collections"],
        )
    except DomainError as exc:
        return _with_retry_after(_json_error(exc.message, status_for(exc)), exc)
    return page_sse(request, events)


# --- Conversations and feedback ---------------------------------------------------------------------------------


@login_required
@require_POST
def conversation_rename(request: HttpRequest, conversation_id: int) -> HttpResponse:
    found = _own_conversation(request, conversation_id)
    form = RenameForm(request.POST)
    if not form.is_valid():
        return _conversation_page(request, found.pk, error=_first_error(form), status=422)
    try:
        services.conversation_rename(conversation=found, title=form.cleaned_data["title"])
    except DomainError as exc:
        return _conversation_page(request, found.pk, error=exc.message, status=status_for(exc))
    return redirect("chat:conversation", conversation_id=found.pk)


@login_required
@require_POST
def conversation_delete(request: HttpRequest, conversation_id: int) -> HttpResponse:
    found = _own_conversation(request, conversation_id)
    services.conversation_delete(conversation=found)
    messages.success(request, f"Deleted “{found}”.")
    return redirect("chat:home")


@login_required
@require_POST
def feedback(request: HttpRequest, message_id: int) -> HttpResponse:
    answer = selectors.message_get(user=request.user, message_id=message_id)
    form = FeedbackForm(request.POST)
    try:
        if not form.is_valid():
            raise InvalidInput(_first_error(form))
        given = services.feedback_give(
            user=request.user,
            message=answer,
            rating=form.cleaned_data["rating"],
            comment=form.cleaned_data["comment"],
        )
    except DomainError as exc:
        if _wants_json(request):
            return _json_error(exc.message, status_for(exc))
        return _conversation_page(request, answer.conversation_id, error=exc.message, status=status_for(exc))
    if _wants_json(request):
        return JsonResponse({"message_id": answer.pk, "rating": given.rating, "comment": given.comment})
    messages.success(request, "Thank you for your feedback.")
    return redirect(_answer_url(answer))


# --- Sources and analytics --------------------------------------------------------------------------------------


@login_required
@require_GET
def passage(request: HttpRequest, citation_id: int) -> HttpResponse:
    found = selectors.citation_passage(user=request.user, citation_id=citation_id)
    return render(request, "chat/passage.html", {"passage": found}, status=410 if found.removed else 200)


@login_required
@require_GET
def analytics(request: HttpRequest) -> HttpResponse:
    if not getattr(request.user, "is_staff", False):
        raise Http404("No such page.")
    return render(request, "chat/analytics.html", {"analytics": selectors.chat_analytics()})
