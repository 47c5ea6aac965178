from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.validators import validate_visible


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True, validators=[validate_visible])
    collections = models.ManyToManyField("knowledge.Collection", blank=True, related_name="conversations")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    class Outcome(models.TextChoices):
        ANSWERED = "answered", "Answered"
        NOT_FOUND = "not_found", "Not in the knowledge base"
        FAILED = "failed", "Language model failed"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=20, choices=Role.choices)
    text = models.TextField()
    # For answers: "extractive" or the LLM's model name; empty for questions.
    answer_mode = models.CharField(max_length=200, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, blank=True)
    # rewritten question, retrieved chunks with their per-mode ranks and scores, timings per stage, token counts,
    # error; see chat.pipeline.Trace.
    trace = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(role="user", outcome="") | Q(role="assistant") & ~Q(outcome=""),
                name="message_outcome_only_on_answers",
            ),
        ]
        indexes = [models.Index(fields=["conversation", "created_at"])]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:60]}"


class Citation(models.Model):
    """A numbered source an answer cites, kept as it was when answered (the chunk may be re-indexed later)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="citations")
    number = models.PositiveIntegerField()
    chunk = models.ForeignKey(
        "knowledge.Chunk", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    document = models.ForeignKey(
        "knowledge.Document", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    title = models.CharField(max_length=500)
    section = models.TextField(blank=True)
    page_number = models.PositiveIntegerField(null=True, blank=True)
    start_offset = models.PositiveIntegerField(null=True, blank=True)
    end_offset = models.PositiveIntegerField(null=True, blank=True)
    quote = models.TextField()
    cited = models.BooleanField(
        default=True, help_text="Cited in the text, or only shown as a retrieved source."
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["message", "number"], name="citation_unique_number")]

    def __str__(self) -> str:
        return f"[{self.number}] {self.title}"

    @property
    def withheld(self) -> bool:
        """The reader may no longer read the cited document (the selectors annotate `readable`): show nothing of
        it. A citation read without that annotation is one just made for its reader."""
        return getattr(self, "readable", True) is False


class Feedback(models.Model):
    class Rating(models.IntegerChoices):
        UP = 1, "Helpful"
        DOWN = -1, "Not helpful"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    rating = models.SmallIntegerField(choices=Rating.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "user"], name="feedback_one_per_user"),
            models.CheckConstraint(condition=Q(rating__in=[1, -1]), name="feedback_rating_up_or_down"),
        ]

    def __str__(self) -> str:
        return f"{self.get_rating_display()} on {self.message_id}"
