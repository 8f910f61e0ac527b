"""Dev tool: reference embeddings from sentence-transformers itself, for tests/test_encoder_reference.py.

Needs torch and sentence-transformers, which the gateway never uses; run it in a separate venv:
    python tools/make_encoder_reference.py DATA_TRAIN_DIR MODEL_DIR tests/data/encoder_reference.npz
Samples 300 texts (fixed seed) of every length from the train files, embeds them with the
original model (max_seq_length 256, mean pooling, normalised) and stores texts + float16 vectors.
"""

import json
import random
import sys
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer

data_dir, model_dir, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
rng = random.Random(20261121)
texts = []
for name in sorted(p.name for p in data_dir.glob("*.jsonl") if not p.name.startswith("pii")):
    rows = [json.loads(line)["text"] for line in (data_dir / name).open()]
    texts += rng.sample(rows, min(18, len(rows)))
texts = [t for t in texts if t.strip()][:300]
model = SentenceTransformer(model_dir, device="cpu")
vectors = model.encode(texts, batch_size=16, normalize_embeddings=True)
np.savez_compressed(out, texts=np.array(texts), embeddings=vectors.astype(np.float16))
print(len(texts), vectors.shape, model.max_seq_length)
