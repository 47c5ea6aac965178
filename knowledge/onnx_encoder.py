"""The embedding network compiled for ONNX Runtime, which embeds chunks and questions on CPU.

Every search embeds its question: one forward pass of a ~20-token input, which through torch and
sentence-transformers costs 7–20 ms on two cores, much of it per-call framework overhead; ONNX Runtime runs the
same graph in about half that, and chunk batches at 1.7x torch's throughput. The graph is exported from the
loaded sentence-transformers model itself (its own pooling and normalization), cached on disk under a fingerprint
of the model's files, and compared with the torch model on a few probe texts before it is used; the caller keeps
torch when anything here fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

# Texts the compiled graph must embed like torch does before it is trusted: short and long, padded in one batch.
PROBES = (
    "How do I take a backup while the database is in use?",
    "VACUUM reclaims storage occupied by dead tuples. " * 40,
    "ok",
)
MIN_PROBE_COSINE = 0.9999
EXPORT_FORMAT = 1  # bump to invalidate cached graphs when the export itself changes


class OnnxUnavailable(Exception):
    """The model cannot run on ONNX Runtime here (runtime missing, export failed, or results differ from torch)."""


class OnnxEncoder:
    """Unit-length sentence embeddings from an exported graph, tokenized with the model's own tokenizer."""

    def __init__(
        self,
        graph: Path,
        *,
        tokenizer_json: Path,
        input_names: Sequence[str],
        max_tokens: int,
        threads: int,
        pad_id: int,
        pad_token: str,
    ) -> None:
        import onnxruntime  # onnx_encoder_load checked that it is installed
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(threads, 0)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads would otherwise spin for a while after each call, taking cores from the other processes.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Sessions are safe to share between threads; run() needs no lock, unlike the shared torch thread pool.
        self._session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self._tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self._tokenizer.enable_truncation(max_tokens)
        # To the longest text of a batch, with the model's own pad token; a single text is not padded.
        self._tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)
        self._input_names = list(input_names)

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        encodings = self._tokenizer.encode_batch(list(texts))
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        feeds = {name: np.asarray(columns[name], dtype=np.int64) for name in self._input_names}
        vectors: NDArray[np.float32] = np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)
        return vectors


def model_fingerprint(model_path: Path) -> str:
    """A key that changes when the model's files, the libraries that trace it, or the export code change."""
    from importlib.metadata import version

    libraries = [version(package) for package in ("torch", "transformers", "sentence-transformers")]
    digest = hashlib.sha256(f"{EXPORT_FORMAT}:{libraries}".encode())
    for file in sorted(p for p in model_path.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(model_path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def _export(model: Any, input_names: Sequence[str], target: Path) -> None:
    """Trace the sentence-transformers pipeline (transformer, pooling, normalization) into an ONNX graph."""
    import torch

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            features = dict(zip(input_names, inputs, strict=True))
            embedding = self.model(features)["sentence_embedding"]
            return torch.nn.functional.normalize(embedding, p=2, dim=1)

    # Token type 0 everywhere: some models have a single token type.
    example = tuple(
        torch.zeros((2, 8), dtype=torch.long)
        if n == "token_type_ids"
        else torch.ones((2, 8), dtype=torch.long)
        for n in input_names
    )
    axes = {name: {0: "batch", 1: "tokens"} for name in input_names}
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed into place, so processes exporting at once never read half a file.
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".part")
    os.close(handle)
    try:
        # The tracer warns about every Python-level branch it freezes; the probes check the result instead.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Pipeline().eval(),
                example,
                temporary,
                input_names=list(input_names),
                output_names=["embedding"],
                dynamic_axes={**axes, "embedding": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        os.chmod(temporary, 0o644)  # mkstemp makes it private; other users of the cache (containers) read it
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)


def onnx_encoder_load(
    *,
    model: Any,
    model_path: Path,
    name: str,
    cache_dir: Path,
    threads: int,
    reference: Callable[[list[str]], NDArray[np.float32]],
) -> OnnxEncoder:
    """The ONNX copy of a loaded sentence-transformers `model`, exported into `cache_dir` on first use.

    `reference(texts)` embeds with torch; the copy is used only if it agrees on PROBES, in a batch and one by one.
    A cached copy that fails is exported again once. Raises OnnxUnavailable.
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise OnnxUnavailable(f"onnxruntime is not installed: {exc}") from exc
    try:
        expected = np.asarray(reference(list(PROBES)), dtype=np.float32)
        tokenizer_json = model_path / "tokenizer.json"
        if not tokenizer_json.is_file():
            raise OnnxUnavailable(f"{model_path} has no tokenizer.json")
        input_names = [
            n
            for n in getattr(model.tokenizer, "model_input_names", ["input_ids", "attention_mask"])
            if n in ("input_ids", "attention_mask", "token_type_ids")
        ]
        slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.strip("/"))[-60:]
        graph = cache_dir / f"{slug}-{model_fingerprint(model_path)}.onnx"

        def open_checked() -> OnnxEncoder:
            encoder = OnnxEncoder(
                graph,
                tokenizer_json=tokenizer_json,
                input_names=input_names,
                max_tokens=int(model.max_seq_length or 256),
                threads=threads,
                pad_id=int(getattr(model.tokenizer, "pad_token_id", None) or 0),
                pad_token=str(getattr(model.tokenizer, "pad_token", None) or "[PAD]"),
            )
            _check(encoder, expected, name)
            return encoder

        if graph.is_file():
            try:
                return open_checked()
            except Exception as exc:  # noqa: BLE001 - a damaged or stale file: export it again, once
                logger.warning("The cached ONNX copy of %s is unusable (%s); exporting it again", name, exc)
                graph.unlink(missing_ok=True)
        logger.info("Exporting %s to ONNX at %s", name, graph)
        _export(model, input_names, graph)
        encoder = open_checked()
        _prune(graph, f"{slug}-")
        return encoder
    except OnnxUnavailable:
        raise
    except Exception as exc:  # the exporter and runtime raise many types; any of them means "use torch"
        raise OnnxUnavailable(f"could not run {name} on ONNX Runtime: {exc}") from exc


def _check(encoder: OnnxEncoder, expected: NDArray[np.float32], name: str) -> None:
    """Raise OnnxUnavailable unless the copy embeds PROBES like torch, padded in one batch and each alone."""
    for compiled in (encoder.embed(PROBES), np.concatenate([encoder.embed([probe]) for probe in PROBES])):
        if compiled.shape != expected.shape:
            raise OnnxUnavailable(
                f"the ONNX copy of {name} makes {compiled.shape} vectors, torch {expected.shape}"
            )
        cosine = float(np.sum(compiled * expected, axis=1).min())
        if not np.isfinite(compiled).all() or not cosine >= MIN_PROBE_COSINE:
            raise OnnxUnavailable(
                f"the ONNX copy of {name} embeds differently from torch (cosine {cosine:.6f})"
            )


def _prune(kept: Path, prefix: str) -> None:
    """Remove the model's graphs made for earlier versions of it, torch or the libraries (~90 MB each)."""
    for old in kept.parent.glob(f"{prefix}*.onnx"):
        if old != kept and len(old.name) == len(kept.name):
            with contextlib.suppress(OSError):
                old.unlink()
