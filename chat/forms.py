"""Parsing of the chat pages' form posts. What a value may be (a readable collection, a non-empty question) is
decided by the services, so that the pages and the API give the same answers."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from chat.models import Feedback


class IdListField(forms.Field):
    """Several ids under one name (checkboxes); existence and permission are checked by the service."""

    widget = forms.CheckboxSelectMultiple

    def to_python(self, value: Any) -> list[int]:
        if not value:
            return []
        values = value if isinstance(value, list | tuple) else [value]
        try:
            return sorted({int(item) for item in values})
        except (TypeError, ValueError):
            raise ValidationError("Choose collections from the list.", code="invalid") from None


class AskForm(forms.Form):
    # Emptiness and length are checked by the service, with the same messages as the API's.
    question = forms.CharField(required=False, strip=True)
    conversation = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    collections = IdListField(required=False)


class FeedbackForm(forms.Form):
    rating = forms.TypedChoiceField(choices=Feedback.Rating.choices, coerce=int)
    comment = forms.CharField(required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 2}))


class RenameForm(forms.Form):
    title = forms.CharField(max_length=200)
