"""Dev tool: the everyday prompts shipped as background negatives for policy heads.

    python tools/make_background.py DATA_TRAIN_DIR gateway/scoring/weights/background.json
Samples 40 rows (fixed seed) from each benign train file (licences in the data's licenses/ folder:
CLINC150 CC-BY-3.0, Banking77 CC-BY-4.0, GSM8K MIT, Self-Instruct Apache-2.0, Arena-Hard Apache-2.0)."""

import json
import random
import sys
from pathlib import Path

data, out = Path(sys.argv[1]), Path(sys.argv[2])
rng = random.Random(20261121)
texts = []
for name in ("benign_clinc150", "benign_banking77", "benign_gsm8k", "benign_self_instruct_seed", "benign_arena_hard_v0.1"):
    rows = [json.loads(line)["text"] for line in (data / f"{name}.jsonl").open()]
    texts += rng.sample([r for r in rows if len(r) < 1500], 40)
out.write_text(json.dumps(texts, ensure_ascii=False, indent=0) + "\n")
print(len(texts))
