from knowledge.embeddings import MINILM, get_embedder


def test_the_model_embeds_documents_and_queries_as_normalized_384_d_vectors():
    embedder = get_embedder(MINILM)

    documents = embedder.embed_documents(["VACUUM reclaims storage.", "pg_dump writes a backup."])
    query = embedder.embed_query("How is disk space reclaimed?")

    assert documents.shape == (2, 384) and query.shape == (384,)
    assert abs(float((query**2).sum()) - 1.0) < 1e-5
    assert float(documents[0] @ query) > float(documents[1] @ query)
