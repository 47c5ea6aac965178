"""The embedding network as an ONNX Runtime graph, built from the model's own files, without torch.

Chunks and questions are embedded on CPU by ONNX Runtime. The graph is written here, operator by operator, from the
model folder itself (config.json, model.safetensors, the sentence-transformers pooling config): a BERT encoder, the
model's pooling, then L2 normalization. So the runtime needs neither torch nor transformers, and the image and the
virtualenv carry none of their gigabytes. The graph is cached on disk under a fingerprint of the model's files and of
this builder, and before it is used it must embed a few probe texts as `reference_embed` does: the same network
written plainly in NumPy from the same weights. The tests also compare it with vectors that sentence-transformers
computed (tests/knowledge/data/minilm_reference.json).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

# Texts the graph must embed like the NumPy network does before it is trusted: short and long, padded in one batch.
PROBES = (
    "How do I take a backup while the database is in use?",
    "VACUUM reclaims storage occupied by dead tuples. " * 40,
    "ok",
)
MIN_PROBE_COSINE = 0.9999
EXPORT_FORMAT = 2  # bump to invalidate cached graphs when the builder changes
OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
POOLING_MODES = ("mean", "cls")


class OnnxUnavailable(Exception):
    """The model cannot run on ONNX Runtime here (runtime missing, an architecture the builder does not know, or a
    graph that embeds differently from the reference)."""


@dataclass(frozen=True)
class EncoderModel:
    """What the builder reads from a sentence-transformers folder of a BERT-family model."""

    path: Path
    layers: int
    heads: int
    hidden: int
    epsilon: float
    pooling: str
    max_tokens: int
    pad_token: str

    @property
    def tokenizer_json(self) -> Path:
        return self.path / "tokenizer.json"

    def weights(self) -> dict[str, NDArray[np.float32]]:
        """The encoder's tensors by their BERT names (without a "bert." prefix), as float32."""
        from safetensors.numpy import load_file

        tensors = load_file(str(self.path / "model.safetensors"))
        prefix = "bert." if any(k.startswith("bert.") for k in tensors) else ""
        return {
            k[len(prefix) :]: np.ascontiguousarray(v, dtype=np.float32)
            for k, v in tensors.items()
            if k.startswith(prefix) and v.dtype.kind == "f"
        }


def _json(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def encoder_model(path: Path) -> EncoderModel:
    """Read the model folder; raises OnnxUnavailable for what the builder cannot express."""
    config_file = path / "config.json"
    if not config_file.is_file() or not (path / "model.safetensors").is_file():
        raise OnnxUnavailable(f"{path} has no config.json and model.safetensors")
    if not (path / "tokenizer.json").is_file():
        raise OnnxUnavailable(f"{path} has no tokenizer.json")
    config = _json(config_file)
    if config.get("model_type") != "bert" or config.get("position_embedding_type", "absolute") != "absolute":
        raise OnnxUnavailable(
            f"{path}: only BERT encoders with absolute positions are built for ONNX Runtime "
            f"(model_type {config.get('model_type')!r})"
        )
    if config.get("hidden_act", "gelu") != "gelu":
        raise OnnxUnavailable(f"{path}: activation {config.get('hidden_act')!r} is not supported")
    pooling = "mean"
    pooling_config = path / "1_Pooling" / "config.json"
    if pooling_config.is_file():
        flags = _json(pooling_config)
        chosen = [m for m in ("mean", "cls", "max", "mean_sqrt_len") if flags.get(f"pooling_mode_{m}_tokens")]
        if flags.get("pooling_mode_cls_token"):
            chosen.append("cls")
        if len(chosen) != 1 or chosen[0] not in POOLING_MODES:
            raise OnnxUnavailable(f"{path}: pooling {chosen} is not supported (mean or cls)")
        pooling = chosen[0]
    max_tokens = int(config.get("max_position_embeddings", 512))
    sentence_config = path / "sentence_bert_config.json"
    if sentence_config.is_file():
        max_tokens = min(max_tokens, int(_json(sentence_config).get("max_seq_length") or max_tokens))
    pad_token = "[PAD]"  # noqa: S105 - a token of the vocabulary, not a secret
    special = path / "special_tokens_map.json"
    if special.is_file():
        value = _json(special).get("pad_token", pad_token)
        pad_token = str(value.get("content", pad_token) if isinstance(value, dict) else value)
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    if hidden % heads:
        raise OnnxUnavailable(f"{path}: hidden size {hidden} is not a multiple of {heads} heads")
    return EncoderModel(
        path=path,
        layers=int(config["num_hidden_layers"]),
        heads=heads,
        hidden=hidden,
        epsilon=float(config.get("layer_norm_eps", 1e-12)),
        pooling=pooling,
        max_tokens=max_tokens,
        pad_token=pad_token,
    )


class OnnxEncoder:
    """Unit-length sentence embeddings from a built graph, tokenized with the model's own tokenizer."""

    def __init__(self, graph: Path | bytes, model: EncoderModel, *, threads: int) -> None:
        import onnxruntime  # onnx_encoder_load checked that it is installed

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(threads, 0)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads would otherwise spin for a while after each call, taking cores from the other processes.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Sessions are safe to share between threads; run() needs no lock.
        source = graph if isinstance(graph, bytes) else str(graph)
        self._session = onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self._tokenize = batch_tokenizer(model)

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        ids, mask, types = self._tokenize(texts)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        vectors: NDArray[np.float32] = np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)
        return vectors


Batch = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]


def batch_tokenizer(model: EncoderModel) -> Any:
    """texts -> (input_ids, attention_mask, token_type_ids), truncated to what the model reads and padded to the
    longest text of the batch with the model's own pad token (a single text is not padded)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model.tokenizer_json))
    tokenizer.enable_truncation(model.max_tokens)
    pad_id = tokenizer.token_to_id(model.pad_token)
    tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token=model.pad_token)

    def tokenize(texts: Sequence[str]) -> Batch:
        encodings = tokenizer.encode_batch(list(texts))
        return (
            np.asarray([e.ids for e in encodings], dtype=np.int64),
            np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
            np.asarray([e.type_ids for e in encodings], dtype=np.int64),
        )

    return tokenize


def model_fingerprint(model_path: Path) -> str:
    """A key that changes when the model's files or this builder change."""
    digest = hashlib.sha256(f"{EXPORT_FORMAT}:{OPSET}".encode())
    for file in sorted(p for p in model_path.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(model_path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def build_graph(model: EncoderModel, weights: dict[str, NDArray[np.float32]] | None = None) -> Any:
    """The ONNX graph: input ids, attention mask and token types in, one unit-length vector per text out."""
    from onnx import TensorProto, helper, numpy_helper

    weights = model.weights() if weights is None else weights
    nodes: list[Any] = []
    initializers: list[Any] = []
    counter = iter(range(1_000_000))

    def constant(value: Any, name: str | None = None) -> str:
        name = name or f"const_{next(counter)}"
        initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(kind: str, *inputs: str, **attributes: Any) -> str:
        output = f"{kind.lower()}_{next(counter)}"
        nodes.append(helper.make_node(kind, list(inputs), [output], **attributes))
        return output

    def tensor(key: str, *, transpose: bool = False) -> str:
        try:
            value = weights[key]
        except KeyError as exc:
            raise OnnxUnavailable(f"{model.path}: the weights have no {key}") from exc
        return constant(np.ascontiguousarray(value.T) if transpose else value, key)

    def linear(x: str, key: str) -> str:
        # torch stores a linear layer's weight as (out, in): transposed once here for MatMul
        return op("Add", op("MatMul", x, tensor(f"{key}.weight", transpose=True)), tensor(f"{key}.bias"))

    def layer_norm(x: str, key: str) -> str:
        return op(
            "LayerNormalization",
            x,
            tensor(f"{key}.weight"),
            tensor(f"{key}.bias"),
            axis=-1,
            epsilon=model.epsilon,
        )

    head_size = model.hidden // model.heads
    words = op("Gather", tensor("embeddings.word_embeddings.weight"), "input_ids")
    length = op("Gather", op("Shape", "input_ids"), constant(np.int64(1)), axis=0)
    positions = op("Range", constant(np.int64(0)), length, constant(np.int64(1)))
    embedded = op(
        "Add",
        op("Add", words, op("Gather", tensor("embeddings.position_embeddings.weight"), positions)),
        op("Gather", tensor("embeddings.token_type_embeddings.weight"), "token_type_ids"),
    )
    x = layer_norm(embedded, "embeddings.LayerNorm")

    mask = op("Cast", "attention_mask", to=TensorProto.FLOAT)
    # 0 where a token is read, a large negative number on padding: added to the attention scores
    attention_bias = op(
        "Unsqueeze",
        op("Mul", op("Sub", constant(np.float32(1.0)), mask), constant(np.float32(-1e9))),
        constant(np.array([1, 2], dtype=np.int64)),
    )
    split_heads = constant(np.array([0, 0, model.heads, head_size], dtype=np.int64))
    merge_heads = constant(np.array([0, 0, model.hidden], dtype=np.int64))
    scale = constant(np.float32(1.0 / math.sqrt(head_size)))
    for i in range(model.layers):
        key = f"encoder.layer.{i}"
        query = op(
            "Transpose",
            op("Reshape", linear(x, f"{key}.attention.self.query"), split_heads),
            perm=[0, 2, 1, 3],
        )
        keys = op(
            "Transpose", op("Reshape", linear(x, f"{key}.attention.self.key"), split_heads), perm=[0, 2, 3, 1]
        )
        values = op(
            "Transpose",
            op("Reshape", linear(x, f"{key}.attention.self.value"), split_heads),
            perm=[0, 2, 1, 3],
        )
        scores = op("Add", op("Mul", op("MatMul", query, keys), scale), attention_bias)
        context = op("MatMul", op("Softmax", scores, axis=-1), values)
        context = op("Reshape", op("Transpose", context, perm=[0, 2, 1, 3]), merge_heads)
        x = layer_norm(
            op("Add", linear(context, f"{key}.attention.output.dense"), x),
            f"{key}.attention.output.LayerNorm",
        )
        inner = linear(x, f"{key}.intermediate.dense")
        # GELU, the exact (erf) form BERT uses
        inner = op(
            "Mul",
            op("Mul", inner, constant(np.float32(0.5))),
            op(
                "Add",
                constant(np.float32(1.0)),
                op("Erf", op("Div", inner, constant(np.float32(math.sqrt(2.0))))),
            ),
        )
        x = layer_norm(op("Add", linear(inner, f"{key}.output.dense"), x), f"{key}.output.LayerNorm")

    if model.pooling == "cls":
        pooled = op(
            "Squeeze",
            op(
                "Slice",
                x,
                constant(np.array([0], dtype=np.int64)),
                constant(np.array([1], dtype=np.int64)),
                constant(np.array([1], dtype=np.int64)),
            ),
            constant(np.array([1], dtype=np.int64)),
        )
    else:
        weights_3d = op("Unsqueeze", mask, constant(np.array([2], dtype=np.int64)))
        axis = constant(np.array([1], dtype=np.int64))
        total = op("ReduceSum", op("Mul", x, weights_3d), axis, keepdims=0)
        count = op("Max", op("ReduceSum", weights_3d, axis, keepdims=0), constant(np.float32(1e-9)))
        pooled = op("Div", total, count)
    norm = op(
        "Max",
        op("ReduceL2", pooled, axes=[1], keepdims=1),
        constant(np.float32(1e-12)),
    )
    nodes.append(helper.make_node("Div", [pooled, norm], ["embedding"]))

    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "tokens"]) for n in INPUT_NAMES]
    output = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", model.hidden])
    graph = helper.make_graph(nodes, "sentence_embedding", inputs, [output], initializers)
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="knowledge-platform"
    )


def reference_embed(
    model: EncoderModel, weights: dict[str, NDArray[np.float32]], batch: Batch
) -> NDArray[np.float32]:
    """The same network written plainly in NumPy (float64): what the graph must agree with before it is used."""
    ids, mask, types = batch

    def w(
        key: str,
    ) -> NDArray[np.float64]:  # each tensor widened when used; the word embeddings only for their rows
        return weights[key].astype(np.float64)

    def norm(x: NDArray[np.float64], key: str) -> NDArray[np.float64]:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + model.epsilon) * w(f"{key}.weight") + w(f"{key}.bias")

    def dense(x: NDArray[np.float64], key: str) -> NDArray[np.float64]:
        return x @ w(f"{key}.weight").T + w(f"{key}.bias")

    batch_size, length = ids.shape
    head_size = model.hidden // model.heads
    words = weights["embeddings.word_embeddings.weight"][ids].astype(np.float64)
    x = words + w("embeddings.position_embeddings.weight")[:length]
    x = norm(x + w("embeddings.token_type_embeddings.weight")[types], "embeddings.LayerNorm")
    bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9)

    def heads(t: NDArray[np.float64]) -> NDArray[np.float64]:
        return t.reshape(batch_size, length, model.heads, head_size).transpose(0, 2, 1, 3)

    for i in range(model.layers):
        key = f"encoder.layer.{i}"
        q, k, v = (heads(dense(x, f"{key}.attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head_size) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = (scores / scores.sum(-1, keepdims=True)) @ v
        context = context.transpose(0, 2, 1, 3).reshape(batch_size, length, model.hidden)
        x = norm(dense(context, f"{key}.attention.output.dense") + x, f"{key}.attention.output.LayerNorm")
        inner = dense(x, f"{key}.intermediate.dense")
        inner = 0.5 * inner * (1.0 + _erf(inner / math.sqrt(2.0)))
        x = norm(dense(inner, f"{key}.output.dense") + x, f"{key}.output.LayerNorm")
    if model.pooling == "cls":
        pooled = x[:, 0]
    else:
        weights_3d = mask[:, :, None].astype(np.float64)
        pooled = (x * weights_3d).sum(1) / np.maximum(weights_3d.sum(1), 1e-9)
    pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return pooled.astype(np.float32)


def _erf(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """erf to within 1.5e-7 (Abramowitz and Stegun 7.1.26), vectorized: NumPy has none of its own."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


def _write(model: EncoderModel, weights: dict[str, NDArray[np.float32]], target: Path) -> None:
    """Build the graph and write it beside the target, renamed into place: processes building at once never read
    half a file."""
    import onnx

    graph = build_graph(model, weights)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".part")
    os.close(handle)
    try:
        onnx.save_model(graph, temporary)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; other users of the cache (containers) read it
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)


def onnx_encoder_load(*, model_path: Path, name: str, cache_dir: Path, threads: int) -> OnnxEncoder:
    """The ONNX Runtime encoder of the model folder `model_path`, its graph built into `cache_dir` on first use.

    The graph is used only if it embeds PROBES as `reference_embed` does, in a batch and one by one. A cached graph
    that fails is built again once. Raises OnnxUnavailable.
    """
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise OnnxUnavailable(f"onnx and onnxruntime are not installed: {exc}") from exc
    model = encoder_model(model_path)
    try:
        tokenize = batch_tokenizer(model)
        weights = model.weights()  # read once, for the reference and for a build
        expected = reference_embed(model, weights, tokenize(list(PROBES)))
        slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.strip("/"))[-60:]
        graph = cache_dir / f"{slug}-{model_fingerprint(model_path)}.onnx"

        def open_checked() -> OnnxEncoder:
            encoder = OnnxEncoder(graph, model, threads=threads)
            _check(encoder, expected, name)
            return encoder

        if graph.is_file():
            try:
                return open_checked()
            except Exception as exc:  # noqa: BLE001 - a damaged or stale file: build it again, once
                logger.warning("The cached ONNX graph of %s is unusable (%s); building it again", name, exc)
                graph.unlink(missing_ok=True)
        logger.info("Building the ONNX graph of %s at %s", name, graph)
        try:
            _write(model, weights, graph)
        except (
            OSError
        ) as exc:  # a read-only or full cache: the graph is built again by each process, in memory
            logger.warning(
                "The ONNX graph of %s cannot be cached at %s (%s); it is kept in memory", name, graph, exc
            )
            encoder = OnnxEncoder(build_graph(model, weights).SerializeToString(), model, threads=threads)
            _check(encoder, expected, name)
            return encoder
        encoder = open_checked()
        _prune(graph, f"{slug}-")
        return encoder
    except OnnxUnavailable:
        raise
    except Exception as exc:  # the builder and the runtime raise many types; any of them means "not usable"
        raise OnnxUnavailable(f"could not run {name} on ONNX Runtime: {exc}") from exc


def _check(encoder: OnnxEncoder, expected: NDArray[np.float32], name: str) -> None:
    """Raise OnnxUnavailable unless the graph embeds PROBES like the reference, padded in one batch and each alone."""
    for compiled in (encoder.embed(PROBES), np.concatenate([encoder.embed([probe]) for probe in PROBES])):
        if compiled.shape != expected.shape:
            raise OnnxUnavailable(
                f"the ONNX graph of {name} makes {compiled.shape} vectors, not {expected.shape}"
            )
        cosine = float(np.sum(compiled * expected, axis=1).min())
        if not np.isfinite(compiled).all() or not cosine >= MIN_PROBE_COSINE:
            raise OnnxUnavailable(
                f"the ONNX graph of {name} embeds differently from the reference (cosine {cosine:.6f})"
            )


def _prune(kept: Path, prefix: str) -> None:
    """Remove the model's graphs made for earlier versions of it or of the builder (~90 MB each)."""
    for old in kept.parent.glob(f"{prefix}*.onnx"):
        if old != kept and len(old.name) == len(kept.name):
            with contextlib.suppress(OSError):
                old.unlink()
