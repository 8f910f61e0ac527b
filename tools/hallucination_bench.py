"""Speed of the hallucination policies as an output stage runs them: a `consistency` (and `factual`,
`relevance`) policy scoring an answer of --answer-words against contexts of growing length.

    .venv/bin/python tools/hallucination_bench.py [--answer-words 300] [--context-words 500,1000,2000,4000,8000]

Each run scores a fresh answer and context (nothing cached), through `Policy.score_async` under the
evaluation context, exactly what the engine awaits; prints p50 and p95 in ms per context length.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.config.guard_schema import PolicySpec  # noqa: E402
from gateway.metrics.context import EVAL_CONTEXT, EvalContext  # noqa: E402
from gateway.guard.policy import compile_policy  # noqa: E402
from gateway.scoring.runtime import ScoringRuntime  # noqa: E402

WORDS = ("company revenue quarter growth customer product market team report increase decline service "
         "price cost project plan result data system network region office contract supply demand sales "
         "policy board meeting budget forecast margin analyst investor launch support research study").split()
NAMES = ("Alice", "Berlin", "Acme", "Tokyo", "Nordbank", "Maria", "Lisbon", "Orion")


def text(words: int, rng: random.Random) -> str:
    """Sentences of 12-24 words with a name and a number in some: about `words` words."""
    out: list[str] = []
    while sum(len(s.split()) for s in out) < words:
        n = rng.randint(12, 24)
        sentence = [rng.choice(WORDS) for _ in range(n)]
        if rng.random() < 0.5:
            sentence[rng.randrange(n)] = rng.choice(NAMES)
        if rng.random() < 0.4:
            sentence[rng.randrange(n)] = f"{rng.randint(1, 999)}.{rng.randint(0, 9)}"
        out.append(" ".join(sentence).capitalize() + ".")
    return " ".join(out)


async def run(policy, answer_words: int, context_words: int, n: int, rng: random.Random) -> list[float]:
    times = []
    for _ in range(n):
        answer, context = text(answer_words, rng), text(context_words, rng)
        EVAL_CONTEXT.set(EvalContext("output", "Summarise the report.", context))
        started = time.perf_counter()
        await policy.score_async(answer)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answer-words", type=int, default=300)
    parser.add_argument("--context-words", default="500,1000,2000,4000,8000")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--types", default="consistency,factual,relevance")
    args = parser.parse_args()
    rng = random.Random(7)
    lengths = [int(x) for x in args.context_words.split(",")]
    runtime = ScoringRuntime()  # the bench's own: one encoder for every policy it times
    for kind in args.types.split(","):
        extra = {"knowledge": "context"} if kind == "factual" else {}
        policy = compile_policy(PolicySpec(id=kind, type=kind, threshold=0.0, **extra), runtime)
        asyncio.run(run(policy, args.answer_words, 200, 3, rng))  # warm-up: the encoder loads
        print(f"{kind}: {args.answer_words}-word answer, {args.runs} runs per context length (fresh texts)")
        for words in lengths:
            t = np.array(asyncio.run(run(policy, args.answer_words, words, args.runs, rng)))
            print(f"  context {words:5d} words: p50 {np.percentile(t, 50):6.1f} ms  p95 {np.percentile(t, 95):6.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
