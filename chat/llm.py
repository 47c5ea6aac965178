"""The language model behind a small interface, reached through the `openai` client.

Any OpenAI-compatible server works (OpenAI, vLLM, Ollama, llama.cpp's server): `OPENAI_BASE_URL` points at it,
`OPENAI_API_KEY` authenticates (a placeholder is sent to servers that need none), `CHAT_LLM_MODEL` names the
model. Every failure of the client becomes an `LLMError` whose message can be shown to a user.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol, cast

from django.conf import settings

from chat.events import Usage
from core.errors import ServiceUnavailable

logger = logging.getLogger(__name__)


EMPTY_MESSAGE = "The language model returned an empty answer."


class LLMError(ServiceUnavailable):
    """The language model could not answer."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message, kind=kind)
        self.kind = kind


@dataclass
class Completion:
    text: str
    usage: Usage = field(default_factory=Usage)


class ChatModel(Protocol):
    name: str

    # `timeout`: the longest the whole response may take (default: the client's CHAT_LLM_TIMEOUT).
    def complete(
        self, messages: list[dict[str, str]], *, max_tokens: int | None = None, timeout: float | None = None
    ) -> Completion: ...

    # Yields the answer's text as it is generated and fills `usage` when the server reports it.
    def stream(
        self, messages: list[dict[str, str]], *, usage: Usage, max_tokens: int | None = None
    ) -> Iterator[str]: ...


class OpenAIChatModel:
    def __init__(self, *, base_url: str, api_key: str, model: str, timeout: float, max_retries: int) -> None:
        import openai

        self.name = model
        self._client = openai.OpenAI(
            base_url=base_url or None,
            # Local servers (llama.cpp, Ollama, vLLM) take any key; the client insists on one.
            api_key=api_key or "no-key-needed",
            timeout=timeout,
            max_retries=max_retries,
        )

    def complete(
        self, messages: list[dict[str, str]], *, max_tokens: int | None = None, timeout: float | None = None
    ) -> Completion:
        client = self._client if timeout is None else self._client.with_options(timeout=timeout)
        with _translated_errors():
            response = client.chat.completions.create(
                model=self.name,
                messages=cast(Any, messages),
                temperature=settings.CHAT_LLM_TEMPERATURE,
                max_tokens=_capped(max_tokens),
            )
            if not response.choices:
                raise LLMError("The language model returned no answer.", kind="malformed")
            usage = response.usage
            text = response.choices[0].message.content or ""
            if not text.strip():
                raise LLMError(EMPTY_MESSAGE, kind="empty")
            return Completion(
                text=text,
                usage=Usage(
                    prompt_tokens=usage.prompt_tokens if usage else None,
                    completion_tokens=usage.completion_tokens if usage else None,
                ),
            )

    def stream(
        self, messages: list[dict[str, str]], *, usage: Usage, max_tokens: int | None = None
    ) -> Iterator[str]:
        with _translated_errors():
            events = self._client.chat.completions.create(
                model=self.name,
                messages=cast(Any, messages),
                temperature=settings.CHAT_LLM_TEMPERATURE,
                max_tokens=_capped(max_tokens),
                stream=True,
                stream_options={"include_usage": True},
            )
            finished = False
            said = False
            for event in events:
                if event.usage is not None:
                    usage.prompt_tokens = event.usage.prompt_tokens
                    usage.completion_tokens = event.usage.completion_tokens
                for choice in event.choices or []:
                    text = choice.delta.content if choice.delta is not None else None
                    if text:
                        said = said or bool(text.strip())
                        yield text
                    finished = finished or choice.finish_reason is not None
            # Every OpenAI-compatible server ends a whole answer with a finish reason; a stream that stops without
            # one was cut (the server died, a proxy closed the connection) and what came is not the answer.
            if not finished:
                raise LLMError("The language model's answer was cut off before its end.", kind="truncated")
            if not said:
                raise LLMError(EMPTY_MESSAGE, kind="empty")


def _capped(max_tokens: int | None) -> int:
    """A caller may ask for a shorter answer than CHAT_LLM_MAX_TOKENS, never a longer one (it is the operator's
    limit on what one answer may cost)."""
    cap = int(settings.CHAT_LLM_MAX_TOKENS)
    return min(max_tokens, cap) if max_tokens else cap


@contextmanager
def _translated_errors() -> Iterator[None]:
    """Turn the openai client's exceptions (and a broken stream) into LLMError with a message for people."""
    import openai

    try:
        yield
    except LLMError:
        raise
    except openai.APITimeoutError as exc:
        raise LLMError("The language model did not answer in time.", kind="timeout") from exc
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise LLMError(
            "The language model refused the credentials (check OPENAI_API_KEY).", kind="auth"
        ) from exc
    except openai.RateLimitError as exc:
        raise LLMError(
            "The language model is over its rate limit; try again shortly.", kind="rate_limit"
        ) from exc
    except openai.NotFoundError as exc:
        raise LLMError(
            f"The language model {settings.CHAT_LLM_MODEL!r} was not found on the server.", kind="not_found"
        ) from exc
    except openai.APIStatusError as exc:
        raise LLMError(f"The language model server failed (HTTP {exc.status_code}).", kind="server") from exc
    except openai.APIConnectionError as exc:
        raise LLMError("The language model server could not be reached.", kind="connection") from exc
    except (openai.APIError, ValueError, KeyError, TypeError, AttributeError) as exc:
        # A stream that stops making sense (bad JSON, missing fields) ends the answer, not the request.
        raise LLMError("The language model sent a malformed response.", kind="malformed") from exc


def llm_configured() -> bool:
    return bool(settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL)


def get_chat_model() -> ChatModel | None:
    """The configured language model, or None when none is configured (the extractive answerer answers)."""
    if not llm_configured():
        return None
    return _chat_model(
        settings.OPENAI_BASE_URL,
        settings.OPENAI_API_KEY,
        settings.CHAT_LLM_MODEL,
        float(settings.CHAT_LLM_TIMEOUT),
        int(settings.CHAT_LLM_MAX_RETRIES),
    )


@cache
def _chat_model(base_url: str, api_key: str, model: str, timeout: float, max_retries: int) -> ChatModel:
    return OpenAIChatModel(
        base_url=base_url, api_key=api_key, model=model, timeout=timeout, max_retries=max_retries
    )
