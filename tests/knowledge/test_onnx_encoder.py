import logging

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from knowledge import embeddings
from knowledge.embeddings import (
    MINILM,
    SentenceTransformerEmbedder,
    embed_in_batches,
    get_embedder,
    minilm_path,
)
from knowledge.onnx_encoder import OnnxUnavailable, model_fingerprint, onnx_encoder_load

QUESTIONS = [
    "How do I take a backup while the database is in use?",
    "vacuum",
    "Why does my query not use an index? " * 60,  # longer than the model reads: truncated alike
]


@pytest.fixture(scope="module")
def torch_embedder():
    """The model on torch alone, the reference the ONNX copy must agree with."""
    return SentenceTransformerEmbedder(MINILM, minilm_path(), runtime="torch")


@pytest.fixture
def cache(settings, tmp_path):
    settings.KNOWLEDGE_MODEL_CACHE_DIR = tmp_path / "models"
    return settings.KNOWLEDGE_MODEL_CACHE_DIR


def load(embedder, cache, **overrides):
    arguments = {
        "model": embedder._model,
        "model_path": minilm_path(),
        "name": MINILM,
        "cache_dir": cache,
        "threads": 1,
        "reference": lambda texts: embedder.embed_documents(texts, batch_size=len(texts)),
    }
    return onnx_encoder_load(**{**arguments, **overrides})


def test_questions_embedded_by_the_onnx_copy_match_torch(torch_embedder, cache):
    embedder = SentenceTransformerEmbedder(MINILM, minilm_path(), runtime="onnx")
    embedder._model = torch_embedder._model  # the same weights, loaded once for the module

    vectors = np.stack([embedder.embed_query(q) for q in QUESTIONS])

    assert embedder.onnx_encoder() is not None
    expected = torch_embedder.embed_documents(QUESTIONS)
    assert vectors.shape == (3, 384)
    assert np.abs(vectors - expected).max() < 1e-4
    assert [p.suffix for p in cache.iterdir()] == [".onnx"]


def test_chunks_embedded_by_the_onnx_copy_match_torch_and_keep_their_order(torch_embedder, cache):
    embedder = SentenceTransformerEmbedder(MINILM, minilm_path(), runtime="onnx")
    embedder._model = torch_embedder._model
    texts = [f"Chunk {i}: " + "the planner chooses an index scan. " * (i % 7) for i in range(23)]

    vectors = embedder.embed_documents(texts, batch_size=4)

    assert embedder.onnx_encoder() is not None
    expected = torch_embedder.embed_documents(texts)
    assert vectors.shape == (23, 384)
    assert np.abs(vectors - expected).max() < 1e-4


def test_a_batch_is_padded_and_embedded_like_single_questions(torch_embedder, cache):
    encoder = load(torch_embedder, cache)

    batch = encoder.embed(QUESTIONS)

    singles = np.stack([encoder.embed([q])[0] for q in QUESTIONS])
    assert np.abs(batch - singles).max() < 1e-4


def test_a_cached_graph_is_reused_without_exporting_again(torch_embedder, cache):
    load(torch_embedder, cache)
    (graph,) = cache.iterdir()
    written = graph.stat().st_mtime_ns

    load(torch_embedder, cache)

    assert graph.stat().st_mtime_ns == written and list(cache.iterdir()) == [graph]


def test_a_copy_that_embeds_differently_from_torch_is_refused(torch_embedder, cache):
    rng = np.random.default_rng(0)

    def other_model(texts):
        vectors = rng.normal(size=(len(texts), 384)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    with pytest.raises(OnnxUnavailable, match="embeds differently"):
        load(torch_embedder, cache, reference=other_model)


def test_a_damaged_cached_graph_is_exported_again(torch_embedder, cache, caplog):
    load(torch_embedder, cache)
    (graph,) = cache.iterdir()
    graph.write_bytes(b"not a graph")

    with caplog.at_level(logging.WARNING, logger="knowledge.onnx_encoder"):
        encoder = load(torch_embedder, cache)

    assert "exporting it again" in caplog.text
    assert graph.stat().st_size > 1_000_000
    expected = torch_embedder.embed_documents(QUESTIONS[:1])
    assert np.abs(encoder.embed(QUESTIONS[:1]) - expected).max() < 1e-4


def test_graphs_made_for_an_earlier_version_of_the_model_are_removed(torch_embedder, cache):
    cache.mkdir(parents=True)
    (cache / f"{MINILM}-{'0' * 20}.onnx").write_bytes(b"an earlier export")
    (cache / "another-model-00000000000000000000.onnx").write_bytes(b"kept")

    load(torch_embedder, cache)

    names = sorted(p.name for p in cache.iterdir())
    assert len(names) == 2 and "another-model-00000000000000000000.onnx" in names
    assert f"{MINILM}-{'0' * 20}.onnx" not in names


def test_a_copy_failing_while_serving_hands_questions_back_to_torch(torch_embedder, cache, caplog):
    embedder = SentenceTransformerEmbedder(MINILM, minilm_path(), runtime="onnx")
    embedder._model = torch_embedder._model
    encoder = embedder.onnx_encoder()

    def broken(texts):
        raise RuntimeError("session lost")

    encoder.embed = broken
    with caplog.at_level(logging.ERROR, logger="knowledge.embeddings"):
        vector = embedder.embed_query(QUESTIONS[0])

    assert "failed" in caplog.text and embedder.onnx_encoder() is None
    assert np.abs(vector - torch_embedder.embed_documents(QUESTIONS[:1])[0]).max() < 1e-6


def test_an_unknown_embedding_runtime_is_a_configuration_error(settings):
    get_embedder.cache_clear()
    settings.KNOWLEDGE_EMBEDDING_RUNTIME = "ONNX"
    try:
        with pytest.raises(ImproperlyConfigured, match="KNOWLEDGE_EMBEDDING_RUNTIME"):
            get_embedder(MINILM)
    finally:
        get_embedder.cache_clear()


def test_an_unwritable_cache_leaves_questions_on_torch(torch_embedder, settings, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    settings.KNOWLEDGE_MODEL_CACHE_DIR = blocked / "models"  # a folder cannot be made inside a file
    embedder = SentenceTransformerEmbedder(MINILM, minilm_path(), runtime="onnx")
    embedder._model = torch_embedder._model

    vector = embedder.embed_query(QUESTIONS[1])

    assert embedder.onnx_encoder() is None
    assert np.abs(vector - torch_embedder.embed_documents(QUESTIONS[1:2])[0]).max() < 1e-6


def test_prepare_models_exports_the_copy_and_can_insist_on_it(cache, settings, capsys):
    get_embedder.cache_clear()
    settings.KNOWLEDGE_EMBEDDING_RUNTIME = "onnx"
    try:
        call_command("prepare_models", "--model", MINILM, "--require-onnx")
        assert "texts are embedded with onnx" in capsys.readouterr().out
        assert any(p.suffix == ".onnx" for p in cache.iterdir())

        get_embedder.cache_clear()
        settings.KNOWLEDGE_EMBEDDING_RUNTIME = "torch"
        with pytest.raises(CommandError, match="not ONNX Runtime"):
            call_command("prepare_models", "--model", MINILM, "--require-onnx")
        call_command("prepare_models", "--model", embeddings.HASHING)
        assert "embedded with builtin" in capsys.readouterr().out
    finally:
        get_embedder.cache_clear()


def test_the_cache_key_changes_when_a_file_of_the_model_changes(tmp_path):
    (tmp_path / "config.json").write_text('{"hidden_size": 384}')
    (tmp_path / "tokenizer.json").write_text("{}")
    before = model_fingerprint(tmp_path)

    (tmp_path / "tokenizer.json").write_text('{"changed": true}')

    assert model_fingerprint(tmp_path) != before


def test_batches_of_any_size_including_none_come_back_in_order(torch_embedder, cache):
    encoder = load(torch_embedder, cache)
    texts = ["a short one", "a somewhat longer text about vacuum", "mid length text"]

    assert embed_in_batches(encoder, [], 4).shape == (0, 384)
    reference = embed_in_batches(encoder, texts, 1)
    for batch_size in (0, 2, 10):
        assert np.abs(embed_in_batches(encoder, texts, batch_size) - reference).max() < 1e-4
    assert np.abs(reference - torch_embedder.embed_documents(texts)).max() < 1e-4
