"""The model pages: draw or upload a digit, ask about a Titanic passenger, the versions with their metrics and
pictures, a comparison of versions, and the test digits the active MNIST model gets wrong.

Every page is for signed-in users. Each view parses the request, makes one call into mlmodels.services or
mlmodels.selectors and renders the result or the domain error. The pictures are served to any signed-in user, not
only staff, because the pages that show them are: they hold aggregate results on public data sets, nothing
personal; they are private to the browser's cache (behind the sign-in) and a finished version's never change."""

from __future__ import annotations

import base64
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotModified
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods

from core.api_errors import status_for
from core.errors import DomainError, ObjectNotFound
from mlmodels import plots, predictions, presentation, selectors
from mlmodels.models import Kind

PASSENGER_FIELDS = ("pclass", "sex", "age", "sibsp", "parch", "fare", "embarked", "name", "cabin", "ticket")
PASSENGER_EXAMPLE = {"pclass": "3", "sex": "female", "age": "22", "sibsp": "0", "parch": "0", "fare": "7.25",
                     "embarked": "S", "name": "", "cabin": "", "ticket": ""}  # fmt: skip
# Feature names of the Titanic model as people read them.
FEATURE_LABELS = {
    "female": "a woman",
    "class_1": "first class",
    "class_2": "second class",
    "class_3": "third class",
    "age": "age",
    "child": "a child (under 14)",
    "age_missing": "age unknown",
    "sibsp": "siblings and spouses aboard",
    "parch": "parents and children aboard",
    "family_size": "family size",
    "alone": "travelling alone",
    "large_family": "a large family (5+)",
    "log_fare": "fare",
    "log_fare_per_person": "fare per person",
    "ticket_group_size": "travel group size",
    "cabin_known": "cabin known",
}
PORTS = {"C": "Cherbourg", "Q": "Queenstown", "S": "Southampton"}
PER_PAGE = 60


def _int(value: str | None, low: int, high: int) -> int | None:
    try:
        number = int(value or "")
    except ValueError:
        return None
    return number if low <= number <= high else None


# What an indicator feature says of a passenger for whom it is 0 ("a woman" is a reason for a man only as "a man").
ABSENT_LABELS = {
    "female": "a man",
    "child": "not a child",
    "age_missing": "age known",
    "alone": "not travelling alone",
    "large_family": "not a large family",
    "cabin_known": "no cabin recorded",
}
# Counts and amounts shown with the passenger's own number.
WITH_VALUE = {
    "age": "age {value:g}",
    "sibsp": "{value:g} siblings and spouses aboard",
    "parch": "{value:g} parents and children aboard",
    "family_size": "a family of {value:g}",
    "ticket_group_size": "a travel group of {value:g}",
}


def _reason_label(name: str, value: float | None) -> str:
    """A feature as a reason about this passenger: what is true of them, never a trait they lack."""
    if value is not None and name in WITH_VALUE:
        return WITH_VALUE[name].format(value=value)
    indicator = name in ABSENT_LABELS or name.startswith(("class_", "title_", "deck_", "embarked_"))
    if value is None or not indicator or value >= 0.5:
        return _feature_label(name)
    if name in ABSENT_LABELS:
        return ABSENT_LABELS[name]
    label = _feature_label(name)
    if name == "deck_U":
        return "deck known"
    if name.startswith("embarked_"):
        return "did not embark at " + label.removeprefix("embarked at ")
    return f"not {label}"


def _feature_label(name: str) -> str:
    if name in FEATURE_LABELS:
        return FEATURE_LABELS[name]
    prefix, _, rest = name.partition("_")
    if prefix == "title":
        return f"title {rest}"
    if prefix == "deck":
        return "deck unknown" if rest == "U" else f"deck {rest}"
    if prefix == "embarked":
        return f"embarked at {PORTS.get(rest, rest)}"
    return name.replace("_", " ")


# --- Index ----------------------------------------------------------------------------------------------------------


@login_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    overview = selectors.models_overview()
    refresh = any(kind.in_progress for kind in overview)
    return render(request, "mlmodels/index.html", {"overview": overview, "auto_refresh": refresh})


# --- Digits ---------------------------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def digits(request: HttpRequest) -> HttpResponse:
    """The canvas (digits.js sends the drawing to the API); without JavaScript, an upload form posting here."""
    context: dict[str, Any] = {
        "active": selectors.model_version_active(kind=Kind.MNIST),
        "training": selectors.model_version_training(kind=Kind.MNIST),
        "bars": _bars(None),
    }
    status = 200
    if request.method == "POST":
        upload = request.FILES.get("image")
        if upload is None:
            context["error"], status = "Choose a picture of a digit to upload.", 422
        else:
            try:
                prediction = predictions.mnist_predict_image(upload=upload)
            except DomainError as exc:
                context["error"], status = exc.message, status_for(exc)
            else:
                context["prediction"] = prediction
                context["bars"] = _bars(prediction)
                seen = plots.digit_png(prediction.prepared.pixels, scale=4)
                context["seen_uri"] = "data:image/png;base64," + base64.b64encode(seen).decode("ascii")
    return render(request, "mlmodels/digits.html", context, status=status)


def _bars(prediction: predictions.DigitPrediction | None) -> list[dict[str, Any]]:
    probabilities = prediction.probabilities if prediction else [0.0] * 10
    best = prediction.digit if prediction else None
    return [
        {"digit": digit, "percent": round(100 * p, 1), "best": digit == best}
        for digit, p in enumerate(probabilities)
    ]


# --- Titanic --------------------------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def titanic(request: HttpRequest) -> HttpResponse:
    """The passenger form; the core's validation checks the fields and names every bad one."""
    values = (
        {field: request.POST.get(field, "").strip() for field in PASSENGER_FIELDS}
        if request.method == "POST"
        else dict(PASSENGER_EXAMPLE)
    )
    context: dict[str, Any] = {
        "values": values,
        "active": selectors.model_version_active(kind=Kind.TITANIC),
        "training": selectors.model_version_training(kind=Kind.TITANIC),
    }
    status = 200
    if request.method == "POST":
        try:
            prediction = predictions.titanic_predict(passenger=values)
        except DomainError as exc:
            context["error"], status = exc.message, status_for(exc)
            context["field_errors"] = exc.details.get("errors", {})
        else:
            context["prediction"] = prediction
            context["percent"] = round(100 * prediction.probability, 1)
            context["reasons"] = [
                {
                    "label": _reason_label(name, prediction.features.get(name)),
                    "weight": round(weight, 2),
                    "up": weight > 0,
                    "width": min(100, round(abs(weight) * 40)),
                }
                for name, weight in list(prediction.contributions.items())[:8]
                if abs(weight) >= 0.01
            ]
    return render(request, "mlmodels/titanic.html", context, status=status)


# --- Versions -------------------------------------------------------------------------------------------------------


@login_required
@require_GET
def version(request: HttpRequest, version_id: int) -> HttpResponse:
    detail = presentation.version_detail(version_id=version_id)
    running = not detail.version.is_finished
    return render(
        request,
        "mlmodels/version.html",
        {"detail": detail, "version": detail.version, "auto_refresh": running},
    )


@login_required
@require_GET
def version_plot(request: HttpRequest, version_id: int, name: str) -> HttpResponse:
    picture = selectors.version_plot(version_id=version_id, name=name)
    return _png_response(request, picture.png, etag=picture.etag, max_age=86400 if picture.final else 0)


def _png_response(
    request: HttpRequest, png: bytes, *, etag: str, max_age: int, immutable: bool = False
) -> HttpResponse:
    quoted = f'"{etag}"'
    response: HttpResponse
    if quoted in request.headers.get("If-None-Match", ""):
        response = HttpResponseNotModified()
    else:
        response = HttpResponse(png, content_type="image/png")
    response["ETag"] = quoted
    # Private: the pictures are behind the sign-in, so no shared cache may keep them.
    response["Cache-Control"] = (
        f"private, max-age={max_age}" + (", immutable" if immutable else "")
        if max_age
        else "private, no-cache"
    )
    return response


@login_required
@require_GET
def compare(request: HttpRequest, kind: str) -> HttpResponse:
    ids = [number for value in request.GET.getlist("ids") if (number := _int(value, 1, 2**62)) is not None]
    try:
        comparison = presentation.versions_compare(kind=kind, ids=ids)
    except DomainError as exc:
        raise Http404(exc.message) from exc
    return render(
        request, "mlmodels/compare.html", {"comparison": comparison, "kind_label": Kind(kind).label}
    )


@login_required
@require_GET
def mistakes(request: HttpRequest) -> HttpResponse:
    order = "confidence" if request.GET.get("order") == "confidence" else "index"
    try:
        found = selectors.version_mistakes(
            version_id=_int(request.GET.get("version"), 1, 2**62),
            page=request.GET.get("page") or 1,
            per_page=PER_PAGE,
            true_label=_int(request.GET.get("true"), 0, 9),
            predicted_label=_int(request.GET.get("predicted"), 0, 9),
            order=order,  # type: ignore[arg-type]
        )
    except ObjectNotFound:
        raise  # the site's 404 page, from core.middleware.PageErrorMiddleware
    except DomainError as exc:
        return render(request, "mlmodels/mistakes.html", {"error": exc.message}, status=status_for(exc))
    return render(request, "mlmodels/mistakes.html", {"found": found})


@login_required
@require_GET
def mnist_digit(request: HttpRequest, index: int) -> HttpResponse:
    png = selectors.mnist_digit_png(index=index)
    # The test set is committed and checksummed: a digit's picture never changes.
    return _png_response(request, png, etag=f"mnist-test-{index}", max_age=365 * 86400, immutable=True)
