"""The optional reranking stage: a cross-encoder that re-scores the fused candidates."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np
from django.conf import settings

from knowledge.search.params import InvalidSearch


class Reranker(Protocol):
    name: str

    def score(self, query: str, texts: Sequence[str]) -> list[float]: ...


class CrossEncoderReranker:
    """A sentence-transformers cross-encoder loaded from a local folder (never from a hub)."""

    def __init__(self, path: Path) -> None:
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as exc:
            raise InvalidSearch(
                "A reranker needs sentence-transformers, which is optional: "
                "install it with `scripts/install_python_deps.sh --torch`."
            ) from exc

        self.name = str(path)
        self._model = CrossEncoder(str(path), device=str(settings.KNOWLEDGE_EMBEDDING_DEVICE))

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        scores = self._model.predict([(query, text) for text in texts], show_progress_bar=False)
        return [float(value) for value in np.asarray(scores).reshape(-1)]


@cache
def get_reranker(path: str) -> Reranker:
    folder = Path(path)
    if not folder.is_dir():
        raise InvalidSearch(f"The reranker model folder {path!r} does not exist.")
    return CrossEncoderReranker(folder)


def configured_reranker() -> Reranker | None:
    path = str(settings.KNOWLEDGE_RERANKER_MODEL or "")
    return get_reranker(path) if path else None
