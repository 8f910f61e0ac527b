"""Dev tool (an experiment, not shipped): fine-tune the encoder end to end for one built-in detector.

    .venv/bin/pip install torch==2.13.0          # training only: the gateway never imports torch
    .venv/bin/python tools/finetune_experiment.py --data ../shared/data/train --detector harmful \\
        --layers 6 --epochs 2 --max-tokens 128 --out /tmp/ft [--test ../shared/data/test]

The shipped detectors are linear heads on a frozen MiniLM embedding. This trains MiniLM's first
`--layers` layers (word embeddings frozen) with a linear head on the same normalised mean embedding,
on the same rows as `models train-detectors` (`detector_data.training_split`: the same held-out 20% split,
the same sample weights). The threshold is the best F1 on that held-out split. It prints held-out
and validation-lines figures and, with `--test`, the `models evaluate` figures on test/ at that
threshold. Fixed seeds; on 2 CPU cores: harmful, 6 layers, 2 epochs, 128 tokens, about 5 minutes.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from gateway.scoring import detector_data, detector_eval, detector_training, detectors, stats
from gateway.scoring.build import find_source

HIDDEN, HEADS, HEAD_DIM = 384, 12, 32


class Layer(torch.nn.Module):
    """One post-LayerNorm BERT layer initialised from the checkpoint's `encoder.layer.{i}` tensors."""

    def __init__(self, w: dict[str, torch.Tensor], p: str) -> None:
        super().__init__()
        attn = f"{p}.attention.self"
        self.qkv = _linear(torch.cat([w[f"{attn}.{n}.weight"] for n in ("query", "key", "value")]),
                           torch.cat([w[f"{attn}.{n}.bias"] for n in ("query", "key", "value")]))
        self.o = _linear(w[f"{p}.attention.output.dense.weight"], w[f"{p}.attention.output.dense.bias"])
        self.ln1 = _norm(w, f"{p}.attention.output.LayerNorm")
        self.inner = _linear(w[f"{p}.intermediate.dense.weight"], w[f"{p}.intermediate.dense.bias"])
        self.out = _linear(w[f"{p}.output.dense.weight"], w[f"{p}.output.dense.bias"])
        self.ln2 = _norm(w, f"{p}.output.LayerNorm")

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, HEADS, HEAD_DIM).permute(2, 0, 3, 1, 4)
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :].bool())
        x = self.ln1(x + self.o(a.transpose(1, 2).reshape(b, t, HIDDEN)))
        return self.ln2(x + self.out(torch.nn.functional.gelu(self.inner(x))))


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> torch.nn.Linear:
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0])
    layer.weight.data, layer.bias.data = weight.clone(), bias.clone()
    return layer


def _norm(w: dict[str, torch.Tensor], prefix: str) -> torch.nn.LayerNorm:
    norm = torch.nn.LayerNorm(HIDDEN, eps=1e-12)
    norm.weight.data, norm.bias.data = w[prefix + ".weight"].clone(), w[prefix + ".bias"].clone()
    return norm


class Model(torch.nn.Module):
    def __init__(self, w: dict[str, torch.Tensor], layers: int) -> None:
        super().__init__()
        self.word = torch.nn.Embedding.from_pretrained(w["embeddings.word_embeddings.weight"], freeze=True)
        self.pos = torch.nn.Parameter(w["embeddings.position_embeddings.weight"].clone())
        self.token_type = torch.nn.Parameter(w["embeddings.token_type_embeddings.weight"][0].clone())
        self.ln = _norm(w, "embeddings.LayerNorm")
        self.layers = torch.nn.ModuleList(Layer(w, f"encoder.layer.{i}") for i in range(layers))
        self.head = torch.nn.Linear(HIDDEN, 1)
        self.scale = torch.nn.Parameter(torch.tensor(10.0))  # the embedding is unit length, as at run time

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.ln(self.word(ids) + self.pos[: ids.shape[1]] + self.token_type)
        for layer in self.layers:
            x = layer(x, mask)
        m = mask.unsqueeze(-1).float()
        mean = torch.nn.functional.normalize((x * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)
        return self.head(mean * self.scale).squeeze(-1)


def batches(lengths: list[int], order: list[int], max_tokens: int) -> list[list[int]]:
    """Consecutive runs of `order` (sorted by length) padded to at most `max_tokens` tokens, 64 rows."""
    out, i = [], 0
    while i < len(order):
        j, longest = i, 0
        while j < len(order) and j - i < 64 and max(longest, lengths[order[j]]) * (j - i + 1) <= max_tokens:
            longest = max(longest, lengths[order[j]])
            j += 1
        j = max(j, i + 1)
        out.append(order[i:j])
        i = j
    return out


def tensors(encs: list[list[int]], idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.zeros(len(idx), max(len(encs[i]) for i in idx), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, i in enumerate(idx):
        ids[r, : len(encs[i])] = torch.tensor(encs[i])
        mask[r, : len(encs[i])] = 1
    return ids, mask


@torch.no_grad()
def predict(model: Model, tok: Tokenizer, texts: list[str]) -> np.ndarray:
    model.eval()
    encs = [e.ids for e in tok.encode_batch(texts)]
    lengths = [len(e) for e in encs]
    out = np.zeros(len(texts))
    for idx in batches(lengths, sorted(range(len(encs)), key=lengths.__getitem__), 16000):
        out[idx] = torch.sigmoid(model(*tensors(encs, idx))).numpy()
    return out


def weighted_step(opt: torch.optim.Optimizer, params: list, logits: torch.Tensor, y: torch.Tensor,
                  w: torch.Tensor) -> torch.Tensor:
    """One optimiser step on the weighted binary cross-entropy (gradients clipped at norm 1); the loss."""
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
    loss = (loss * w).sum() / w.sum()
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    return loss


def train(args: argparse.Namespace, model: Model, tok: Tokenizer) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Fits the model on train's 80%; returns the held-out split's probabilities, labels and sources."""
    split = detector_data.training_split(args.data, args.detector)
    texts, labels, weights, idx_train, idx_hold = split.texts, split.labels, split.weights, split.train, split.hold
    pos_weight = float((labels[idx_train] == 0).sum() / max((labels[idx_train] == 1).sum(), 1))
    encs = [e.ids for e in tok.encode_batch(texts)]
    lengths = [len(e) for e in encs]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    rng = np.random.default_rng(detector_data.SEED)
    epochs = math.ceil(args.epochs)
    plan = []
    for epoch in range(epochs):  # length-sorted chunks of a shuffle, batches in random order
        order = [int(i) for i in idx_train[rng.permutation(len(idx_train))]]
        chunk = [b for k in range(0, len(order), 2048)
                 for b in batches(lengths, sorted(order[k:k + 2048], key=lengths.__getitem__), 6000)]
        rng.shuffle(chunk)
        plan += chunk[: int(len(chunk) * min(1.0, args.epochs - epoch))]
    model.train()
    for step, idx in enumerate(plan):
        for group in opt.param_groups:  # warm-up, then linear decay
            group["lr"] = args.lr * min(1.0, (step + 1) / 100) * max(0.05, 1 - step / len(plan))
        y = torch.tensor(labels[idx], dtype=torch.float32)
        w = torch.tensor(weights[idx], dtype=torch.float32) * torch.where(y > 0, pos_weight, 1.0)
        loss = weighted_step(opt, params, model(*tensors(encs, idx)), y, w)
        if step % 100 == 0:
            print(f"step {step}/{len(plan)} loss {loss.item():.4f}", flush=True)
    return (predict(model, tok, [texts[i] for i in idx_hold]), labels[idx_hold],
            [split.sources[i] for i in idx_hold])


def _per_source(scores: np.ndarray, labels: np.ndarray, sources: list[str], threshold: float) -> dict[str, float]:
    """Held-out recall per attack file at `threshold` (what the shipped head's training log prints)."""
    out: dict[str, list[bool]] = {}
    for score, label, source in zip(scores.tolist(), labels.tolist(), sources):
        if label == 1:
            out.setdefault(source, []).append(score > threshold)
    return {k: round(float(np.mean(v)), 3) for k, v in sorted(out.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the train/ directory")
    parser.add_argument("--detector", choices=detectors.DETECTORS, required=True)
    parser.add_argument("--layers", type=int, default=6, choices=range(1, 7))
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens read per text (head of the text)")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--out", type=Path, required=True, help="directory for the weights and the report")
    parser.add_argument("--test", type=Path, help="test/ directory: report only, never used to choose")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    source = find_source()
    weights = {k.removeprefix("bert."): torch.tensor(v) for k, v in load_file(str(source / "model.safetensors")).items()}
    tok = Tokenizer.from_file(str(source / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(args.max_tokens)
    model = Model(weights, args.layers)
    hold, y, sources = train(args, model, tok)
    threshold, f1 = stats.best_f1_threshold(hold, y)
    # as the shipped heads are calibrated: the 1% false-positive budget on the held-out everyday files
    budget = detector_training.with_margin(detector_training.budget_threshold(hold, sources), hold[y == 1])
    report: dict = {"detector": args.detector, "layers": args.layers, "epochs": args.epochs,
                    "max_tokens": args.max_tokens, "threshold": round(threshold, 4),
                    "holdout": {"f1": round(f1, 4), "auc": round(stats.roc_auc(hold, y), 4),
                                "tpr_at_1pct_fpr": round(stats.tpr_at_fpr(hold, y, .01), 4)},
                    "budget": {"threshold": round(budget, 4), "recall": round(float((hold[y == 1] > budget).mean()), 4),
                               "f1": round(stats.f1(hold > budget, y), 4),
                               "per_source_recall": _per_source(hold, y, sources, budget)}}
    validation = Path(detectors.__file__).parent / "prompts" / "validation" / f"{args.detector}.jsonl"
    if validation.is_file():
        rows = [json.loads(line) for line in validation.open(encoding="utf-8") if line.strip()]
        p, yv = predict(model, tok, [r["text"] for r in rows]), np.array([r["label"] for r in rows])
        report["validation"] = {"f1": round(stats.f1(p > threshold, yv), 4), "auc": round(stats.roc_auc(p, yv), 4)}
    if args.test:
        report["test"] = detector_eval.evaluate_scores(args.detector, args.test,
                                                   lambda texts: (predict(model, tok, texts), 0.0), threshold)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / f"{args.detector}-l{args.layers}.pt")
    (args.out / f"{args.detector}-l{args.layers}.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
