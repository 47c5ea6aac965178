import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from knowledge import embeddings, onnx_encoder
from knowledge.embeddings import (
    MINILM,
    OnnxEmbedder,
    UnknownEmbeddingModel,
    embed_in_batches,
    get_embedder,
    minilm_path,
)
from knowledge.onnx_encoder import (
    OnnxUnavailable,
    batch_tokenizer,
    build_graph,
    encoder_model,
    model_fingerprint,
    onnx_encoder_load,
    reference_embed,
)

# Vectors sentence-transformers computed on torch (tests/knowledge/data/make_minilm_reference.py)
REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text(encoding="utf-8"))
QUESTIONS = REFERENCE["texts"][:4]


@pytest.fixture
def cache(settings, tmp_path):
    settings.KNOWLEDGE_MODEL_CACHE_DIR = tmp_path / "models"
    return settings.KNOWLEDGE_MODEL_CACHE_DIR


def load(cache, path=None):
    return onnx_encoder_load(model_path=path or minilm_path(), name=MINILM, cache_dir=cache, threads=1)


def test_the_built_graph_embeds_as_sentence_transformers_does(cache):
    embedder = OnnxEmbedder(MINILM, minilm_path())
    expected = np.asarray(REFERENCE["vectors"], dtype=np.float32)

    batched = embedder.embed_documents(REFERENCE["texts"], batch_size=3)
    alone = np.stack([embedder.embed_query(text) for text in REFERENCE["texts"]])

    assert batched.shape == expected.shape == (8, 384)
    for vectors in (batched, alone):
        assert np.abs(vectors - expected).max() < 1e-4
        assert np.sum(vectors * expected, axis=1).min() > 0.99999
    assert [p.suffix for p in cache.iterdir()] == [".onnx"]


def test_the_default_runtime_never_imports_torch():
    script = (
        "import sys, django; django.setup(); from knowledge.embeddings import get_embedder, MINILM;"
        "from knowledge.onnx_encoder import OnnxEncoder; e = get_embedder(MINILM); v = e.embed_query('backups');"
        "assert v.shape == (384,), v.shape; e.embed_documents(['a', 'b c']);"
        "loaded = sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules);"
        "print('loaded:', loaded)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded: []" in result.stdout


def test_each_process_can_be_given_its_share_of_the_cores(settings, cache):
    settings.KNOWLEDGE_TORCH_THREADS = 1
    embedder = OnnxEmbedder(MINILM, minilm_path())

    options = embedder.encoder()._session.get_session_options()

    assert options.intra_op_num_threads == 1


def test_a_batch_is_padded_and_embedded_like_single_questions(cache):
    encoder = load(cache)

    batch = encoder.embed(QUESTIONS)

    singles = np.stack([encoder.embed([q])[0] for q in QUESTIONS])
    assert np.abs(batch - singles).max() < 1e-4


def test_a_cached_graph_is_reused_without_building_it_again(cache):
    load(cache)
    (graph,) = cache.iterdir()
    written = graph.stat().st_mtime_ns

    load(cache)

    assert graph.stat().st_mtime_ns == written and list(cache.iterdir()) == [graph]


def test_a_graph_that_embeds_differently_from_the_reference_is_refused(cache, monkeypatch):
    rng = np.random.default_rng(0)

    def other_model(model, weights, batch):
        vectors = rng.normal(size=(len(batch[0]), 384)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    monkeypatch.setattr(onnx_encoder, "reference_embed", other_model)
    with pytest.raises(OnnxUnavailable, match="embeds differently"):
        load(cache)


def test_a_damaged_cached_graph_is_built_again(cache, caplog):
    load(cache)
    (graph,) = cache.iterdir()
    graph.write_bytes(b"not a graph")

    with caplog.at_level(logging.WARNING, logger="knowledge.onnx_encoder"):
        encoder = load(cache)

    assert "building it again" in caplog.text
    assert graph.stat().st_size > 1_000_000
    expected = np.asarray(REFERENCE["vectors"][:1], dtype=np.float32)
    assert np.abs(encoder.embed(REFERENCE["texts"][:1]) - expected).max() < 1e-4


def test_graphs_made_for_an_earlier_version_of_the_model_are_removed(cache):
    cache.mkdir(parents=True)
    (cache / f"{MINILM}-{'0' * 20}.onnx").write_bytes(b"an earlier build")
    (cache / "another-model-00000000000000000000.onnx").write_bytes(b"kept")

    load(cache)

    names = sorted(p.name for p in cache.iterdir())
    assert len(names) == 2 and "another-model-00000000000000000000.onnx" in names
    assert f"{MINILM}-{'0' * 20}.onnx" not in names


def test_an_unwritable_cache_keeps_the_graph_in_memory(settings, tmp_path, caplog):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    settings.KNOWLEDGE_MODEL_CACHE_DIR = blocked / "models"  # a folder cannot be made inside a file
    embedder = OnnxEmbedder(MINILM, minilm_path())

    with caplog.at_level(logging.WARNING, logger="knowledge.onnx_encoder"):
        vector = embedder.embed_query(REFERENCE["texts"][1])

    assert "kept in memory" in caplog.text
    assert np.abs(vector - np.asarray(REFERENCE["vectors"][1])).max() < 1e-4


def test_an_unknown_embedding_runtime_is_a_configuration_error(settings):
    get_embedder.cache_clear()
    settings.KNOWLEDGE_EMBEDDING_RUNTIME = "ONNX"
    try:
        with pytest.raises(ImproperlyConfigured, match="KNOWLEDGE_EMBEDDING_RUNTIME"):
            get_embedder(MINILM)
    finally:
        get_embedder.cache_clear()


def without_sentence_transformers(monkeypatch):
    for module in ("sentence_transformers", "transformers"):
        monkeypatch.setitem(sys.modules, module, None)  # `import` raises ImportError


def test_prepare_models_builds_the_graph_and_says_what_torch_would_need(cache, settings, capsys, monkeypatch):
    get_embedder.cache_clear()
    settings.KNOWLEDGE_EMBEDDING_RUNTIME = "onnx"
    try:
        call_command("prepare_models", "--model", MINILM, "--require-onnx")
        assert "texts are embedded with onnx" in capsys.readouterr().out
        assert any(p.suffix == ".onnx" for p in cache.iterdir())

        get_embedder.cache_clear()
        settings.KNOWLEDGE_EMBEDDING_RUNTIME = "torch"
        without_sentence_transformers(monkeypatch)
        with pytest.raises(CommandError, match=r"sentence-transformers is not installed.*--torch"):
            call_command("prepare_models", "--model", MINILM, "--require-onnx")
        call_command("prepare_models", "--model", embeddings.HASHING)
        assert "embedded with builtin" in capsys.readouterr().out
    finally:
        get_embedder.cache_clear()


def model_copy(tmp_path, **config_changes):
    """A folder with MiniLM's files and a changed config.json."""
    folder = tmp_path / "model"
    folder.mkdir()
    for item in minilm_path().iterdir():
        (folder / item.name).symlink_to(item)
    config = json.loads((minilm_path() / "config.json").read_text())
    (folder / "config.json").unlink()
    (folder / "config.json").write_text(json.dumps({**config, **config_changes}))
    return folder


def test_a_model_the_builder_does_not_know_names_what_to_install(tmp_path, cache, monkeypatch):
    folder = model_copy(tmp_path, model_type="roberta")
    without_sentence_transformers(monkeypatch)

    with pytest.raises(UnknownEmbeddingModel, match=r"only BERT encoders.*--torch"):
        embeddings._model_embedder(str(folder), folder, "cpu", "onnx")


def tiny_bert(tmp_path, pooling):
    """A two-layer BERT with random weights, MiniLM's tokenizer and the given pooling."""
    from safetensors.numpy import save_file

    folder = tmp_path / f"tiny-{pooling}"
    (folder / "1_Pooling").mkdir(parents=True)
    config = {
        "model_type": "bert",
        "hidden_size": 8,
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "intermediate_size": 16,
        "max_position_embeddings": 64,
        "type_vocab_size": 2,
        "vocab_size": 30522,
        "layer_norm_eps": 1e-12,
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").symlink_to(minilm_path() / "tokenizer.json")
    flags = {f"pooling_mode_{m}_tokens": m == pooling for m in ("mean", "max")}
    flags["pooling_mode_cls_token"] = pooling == "cls"
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(flags))
    rng = np.random.default_rng(7)
    shapes = {
        "embeddings.word_embeddings.weight": (30522, 8),
        "embeddings.position_embeddings.weight": (64, 8),
        "embeddings.token_type_embeddings.weight": (2, 8),
        "embeddings.LayerNorm.weight": (8,),
        "embeddings.LayerNorm.bias": (8,),
    }
    for i in range(2):
        key = f"encoder.layer.{i}"
        for name in (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ):
            shapes |= {f"{key}.{name}.weight": (8, 8), f"{key}.{name}.bias": (8,)}
        shapes |= {f"{key}.intermediate.dense.weight": (16, 8), f"{key}.intermediate.dense.bias": (16,)}
        shapes |= {f"{key}.output.dense.weight": (8, 16), f"{key}.output.dense.bias": (8,)}
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes |= {f"{key}.{norm}.weight": (8,), f"{key}.{norm}.bias": (8,)}
    # Saved with BERT's "bert." prefix, as a BertForMaskedLM checkpoint names them
    save_file(
        {f"bert.{k}": rng.normal(size=s).astype(np.float32) for k, s in shapes.items()},
        folder / "model.safetensors",
    )
    return folder


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_the_builder_follows_the_model_folder(tmp_path, cache, pooling):
    folder = tiny_bert(tmp_path, pooling)
    model = encoder_model(folder)
    texts = ["a short text", "a rather longer text about backups and restores " * 3]

    encoder = onnx_encoder_load(model_path=folder, name="tiny", cache_dir=cache, threads=1)

    expected = reference_embed(model, model.weights(), batch_tokenizer(model)(texts))
    assert model.pooling == pooling and model.hidden == 8 and model.max_tokens == 64
    assert np.abs(encoder.embed(texts) - expected).max() < 1e-5
    assert len(build_graph(model).graph.node) > 50


def test_pooling_the_builder_cannot_express_is_refused(tmp_path):
    folder = tiny_bert(tmp_path, "max")

    with pytest.raises(OnnxUnavailable, match="pooling"):
        encoder_model(folder)


def test_the_cache_key_changes_when_a_file_of_the_model_changes(tmp_path):
    (tmp_path / "config.json").write_text('{"hidden_size": 384}')
    (tmp_path / "tokenizer.json").write_text("{}")
    before = model_fingerprint(tmp_path)

    (tmp_path / "tokenizer.json").write_text('{"changed": true}')

    assert model_fingerprint(tmp_path) != before


def test_batches_of_any_size_including_none_come_back_in_order(cache):
    encoder = load(cache)
    texts = REFERENCE["texts"]

    assert embed_in_batches(encoder, [], 4).shape == (0, 384)
    reference = embed_in_batches(encoder, texts, 1)
    for batch_size in (0, 2, 10):
        assert np.abs(embed_in_batches(encoder, texts, batch_size) - reference).max() < 1e-4
    assert np.abs(reference - np.asarray(REFERENCE["vectors"])).max() < 1e-4
