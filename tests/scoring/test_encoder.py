"""The compiled encoder against sentence-transformers' own embeddings, windows, build, batching, cache."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gateway.scoring.batcher import EmbeddingService
from gateway.scoring import build
from gateway.scoring.build import EMBEDDING_REVISION, GRAPH_REVISION, ModelError, encoder_files, find_source
from gateway.scoring.encoder import Encoder, EncoderOptions

REFERENCE = Path(__file__).resolve().parent.parent / "data" / "encoder_reference.npz"


@pytest.fixture(scope="module")
def reference() -> tuple[list[str], np.ndarray]:
    # 300 texts and their embeddings from sentence-transformers itself (tools/make_encoder_reference.py).
    with np.load(REFERENCE) as data:
        return [str(t) for t in data["texts"]], data["embeddings"].astype(np.float32)


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder.load()


@pytest.fixture(scope="module")
def fresh_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One build from the weights package into an empty cache, by the CLI, shared by the tests that need
    a fresh build (each used to build its own: about 45 s apiece on 2 cores)."""
    cache = tmp_path_factory.mktemp("fresh-build")
    proc = subprocess.run([sys.executable, "-m", "gateway", "models", "build", "--model-dir", str(cache)],
                          capture_output=True, text=True, timeout=300)
    return cache, proc


def _linked_copy(cache: Path, to: Path) -> Path:
    """A copy of a built cache made of hard links (instant): a test may rename or delete in it."""
    import shutil

    shutil.copytree(cache, to, copy_function=os.link)
    return to


def _cosines(precision: str, texts: list[str], ref: np.ndarray) -> np.ndarray:
    enc = Encoder.load(options=EncoderOptions(precision=precision, max_windows=1))
    windows = [w[0] for w in enc.windows(texts)]  # sentence-transformers truncates at 256 tokens
    out = np.concatenate([enc.run(windows[i:i + 32]) for i in range(0, len(windows), 32)])
    return (out * ref).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1)


@pytest.mark.parametrize(("precision", "floor"), [("fp32", 0.99), ("int8", 0.95)])
def test_matches_sentence_transformers(reference, precision: str, floor: float) -> None:
    texts, ref = reference
    assert len(texts) >= 300
    cos = _cosines(precision, texts, ref)
    assert cos.min() >= floor, f"{precision}: worst cosine {cos.min():.4f} (mean {cos.mean():.4f})"


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_embeddings_are_normalised_and_batch_independent(precision: str) -> None:
    # Padding and batch companions must not change a text's vector (same text, same verdict). int8
    # quantises activations per call, so the encoder runs its windows one per call.
    encoder = Encoder.load(options=EncoderOptions(precision=precision))
    texts = ["short", "a somewhat longer sentence about the weather in Paris", "x " * 300]
    windows = [w[0] for w in encoder.windows(texts)]
    together = encoder.run(windows)
    alone = np.stack([encoder.run([w])[0] for w in windows])
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-4)
    assert (together * alone).sum(1).min() >= 0.99999


def test_long_texts_are_windowed(encoder: Encoder) -> None:
    words = " ".join(f"word{i}" for i in range(3000))
    windows = encoder.windows([words])[0]
    assert len(windows) == encoder.options.max_windows
    assert all(len(w) <= encoder.max_tokens for w in windows)
    cls, sep = encoder.tokenizer.token_to_id("[CLS]"), encoder.tokenizer.token_to_id("[SEP]")
    assert all(w[0] == cls and w[-1] == sep for w in windows)
    tail = encoder.tokenizer.encode(words, add_special_tokens=False).ids[-5:]
    assert windows[-1][-6:-1] == tail  # the end of the text is always scored
    assert encoder.windows([""])[0] == [[cls, sep]]


def test_build_is_cached_and_versioned(fresh_build: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    tmp_path, proc = fresh_build
    assert proc.returncode == 0, proc.stderr
    files = encoder_files(tmp_path)  # what the CLI built is found, not built again
    manifest = (files.directory / "manifest.json").stat().st_mtime
    again = encoder_files(tmp_path)
    assert again.directory == files.directory and (files.directory / "manifest.json").stat().st_mtime == manifest
    assert files.int8.stat().st_size < files.fp32.stat().st_size
    # The detectors' 3-layer encoder is built beside it, from the same weights, and is smaller.
    assert files.path("int8", 3).name == "encoder-l3-int8.onnx"
    assert files.path("fp32", 3).stat().st_size < files.fp32.stat().st_size
    assert files.path("int8", 3).stat().st_size < files.int8.stat().st_size
    assert not list(tmp_path.rglob(".build-*"))  # no temporary directory left behind
    # The directory names the graph revision; the version (which trained heads record) names only the
    # weights and the embedding revision, so a rebuilt graph keeps stored policy heads serving.
    assert files.version.endswith(f"-b{EMBEDDING_REVISION}") and "-g" not in files.version
    assert files.directory.name == f"{files.version}-g{GRAPH_REVISION}"


def test_attention_is_one_fused_kernel() -> None:
    import onnx

    files = encoder_files()
    for precision, op in (("fp32", "Attention"), ("int8", "QAttention")):
        for layers in (0, 3):
            graph = onnx.load(str(files.path(precision, layers)), load_external_data=False).graph
            ops = [n.op_type for n in graph.node]
            assert ops.count(op) == (layers or 6), (precision, layers)
            assert "Softmax" not in ops and "Transpose" not in ops  # no unfused attention left


def test_a_cache_without_the_weights_package_serves(fresh_build: tuple[Path, subprocess.CompletedProcess[str]],
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An image compiles the encoder at build time and may then drop the weights package.
    tmp_path = _linked_copy(fresh_build[0], tmp_path / "cache")
    built = encoder_files(tmp_path)
    monkeypatch.setattr(build, "SOURCE_PACKAGES", ("no_such_weights_package",))
    with pytest.raises(ModelError, match="not installed"):
        find_source()
    again = encoder_files(tmp_path)
    assert (again.directory, again.version) == (built.directory, built.version)
    # A cache of another graph revision is not taken for this one.
    os.rename(built.directory, built.directory.with_name(f"{built.version}-g0"))
    with pytest.raises(ModelError, match="not installed"):
        encoder_files(tmp_path)


def test_missing_source_names_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="missing model.safetensors, tokenizer.json"):
        find_source(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "gateway", "models", "build", "--source", str(tmp_path),
                           "--model-dir", str(tmp_path / "cache")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "missing model.safetensors" in proc.stderr and "Traceback" not in proc.stderr


def test_models_build_command(fresh_build: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    proc = fresh_build[1]
    assert proc.returncode == 0, proc.stderr
    assert "encoder-int8.onnx" in proc.stdout and "encoder-fp32.onnx" in proc.stdout
    assert "encoder-l3-int8.onnx" in proc.stdout



def test_models_build_names_and_prunes_stale_builds(tmp_path: Path) -> None:
    """Builds of other versions or graph revisions are a few hundred MB each that nothing reads: `models
    build` says so, and with --prune removes them (never the current build, a temporary build or a link)."""
    current = encoder_files(build=False)
    cache = tmp_path / "cache"
    (cache / "heads").mkdir(parents=True)  # stored policy heads live beside the encoder: kept
    builds = cache / current.directory.parent.name
    builds.mkdir()
    (builds / current.directory.name).symlink_to(current.directory)  # the current build, not rebuilt
    stale = builds / f"{current.version.split('-')[0]}-b1-g2"
    stale.mkdir()
    (stale / "encoder-int8.onnx").write_bytes(b"x" * 2_000_000)
    (builds / ".build-abc123").mkdir()  # a build being written by another process
    other = tmp_path / "elsewhere"
    other.mkdir()
    (builds / "linked").symlink_to(other)
    command = [sys.executable, "-m", "gateway", "models", "build", "--model-dir", str(cache)]
    told = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert told.returncode == 0, told.stderr
    assert "1 stale build(s)" in told.stdout and "2.0 MB" in told.stdout and stale.is_dir()
    pruned = subprocess.run([*command, "--prune"], capture_output=True, text=True, timeout=300)
    assert pruned.returncode == 0, pruned.stderr
    assert f"removed the stale build {stale} (2.0 MB)" in pruned.stdout
    assert not stale.exists()
    assert (builds / current.directory.name / "manifest.json").is_file() and current.int8.is_file()
    assert (builds / ".build-abc123").is_dir() and other.is_dir() and (cache / "heads").is_dir()
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert "stale" not in again.stdout


# --- the embedding service: batching, cache, de-duplication --------------------------------------

def _service(encoder: Encoder, **kw) -> EmbeddingService:
    return EmbeddingService(encoder, **kw)


def test_service_matches_direct_encoding(encoder: Encoder) -> None:
    texts = [f"request number {i}: " + "please summarise this paragraph " * (i % 7) for i in range(24)]

    async def go() -> list[np.ndarray]:
        service = _service(encoder, max_batch=8, max_wait_ms=2)
        try:
            return await asyncio.gather(*(service.embed(t) for t in texts))
        finally:
            service.close()

    got = asyncio.run(go())
    expected = encoder.embed(texts)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-4)


def test_concurrent_texts_share_batches(encoder: Encoder) -> None:
    texts = [f"distinct text {i} about topic {i * 7}" for i in range(16)]

    async def go() -> EmbeddingService:
        service = _service(encoder, max_batch=32, max_wait_ms=5)
        await asyncio.gather(*(service.embed(t) for t in texts))
        service.close()
        return service

    stats = asyncio.run(go()).stats
    assert stats.windows == 16
    assert stats.batches < 16, stats  # some texts were embedded together


def test_unbatched_runs_one_text_per_call(encoder: Encoder) -> None:
    async def go() -> EmbeddingService:
        service = _service(encoder, batching=False)
        await asyncio.gather(*(service.embed(f"text {i}") for i in range(6)))
        service.close()
        return service

    stats = asyncio.run(go()).stats
    assert stats.batches == 6 and max(stats.batch_sizes) == 1


def test_cache_and_inflight_deduplication(encoder: Encoder) -> None:
    async def go() -> EmbeddingService:
        service = _service(encoder, cache_entries=2)
        await asyncio.gather(*(service.embed("the same system prompt") for _ in range(10)))
        await service.embed("the same system prompt")
        await service.embed("b")
        await service.embed("c")  # evicts the oldest entry (LRU of 2)
        await service.embed("the same system prompt")
        service.close()
        return service

    stats = asyncio.run(go()).stats
    assert stats.windows == 4  # one run for ten concurrent copies, one for b, one for c, one after eviction
    assert stats.cache_hits == 10


def test_encoder_errors_reach_every_caller(encoder: Encoder) -> None:
    class Broken(Encoder):
        def __init__(self, inner: Encoder) -> None:
            self.__dict__.update(inner.__dict__)

        def run(self, windows):  # a failing ONNX session (e.g. out of memory)
            raise RuntimeError("session failed")

    async def go() -> list:
        service = _service(Broken(encoder), max_wait_ms=2)
        out = await asyncio.gather(*(service.embed(f"t{i}") for i in range(4)), return_exceptions=True)
        service.close()
        return out

    results = asyncio.run(go())
    assert all(isinstance(r, RuntimeError) and "session failed" in str(r) for r in results)


def test_a_missing_model_file_names_the_fix(tmp_path: Path) -> None:
    """A cache compiled without the 3-layer model (and no weights to build it): a clear error."""
    import shutil

    from gateway.scoring.build import default_cache_dir

    files = encoder_files()
    copy = tmp_path / files.directory.relative_to(default_cache_dir())
    copy.mkdir(parents=True)
    for name in ("manifest.json", "tokenizer.json", "encoder-int8.onnx"):  # no encoder-l3-*
        shutil.copyfile(files.directory / name, copy / name)
    env_dir = tmp_path
    proc = subprocess.run([sys.executable, "-c", (
        "from gateway.scoring.encoder import Encoder, EncoderOptions\n"
        "import gateway.scoring.build as b\n"
        "b.find_source = lambda explicit=None: (_ for _ in ()).throw(b.ModelError('no weights'))\n"
        "Encoder.load(options=EncoderOptions(layers=3))")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "GATEWAY_MODEL_DIR": str(env_dir)})
    assert proc.returncode == 1 and "encoder-l3-int8.onnx is missing: run `guardrail-gateway models build`" \
        in proc.stderr, proc.stderr[-1500:]


def test_first_tier_features_are_bounded_in_bytes(encoder: Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first-tier feature cache drops its oldest texts once they hold more than the byte budget
    (long texts' tokens and sentences are large), however many entries `cache_entries` allows."""
    from gateway.scoring import batcher

    service = EmbeddingService(encoder, cache_entries=4096)
    texts = [f"Sentence number {n} of a long document about text {n}. " * 120 for n in range(6)]
    one = service.features(texts[0], sentences=True).nbytes
    assert one > 100_000  # tokens, lexical indices and 120 sentences' static embeddings
    monkeypatch.setattr(batcher, "FEATURES_BUDGET", int(2.5 * one))
    for text in texts[1:]:
        service.features(text, sentences=True)
    kept = list(service._features.values())
    assert len(kept) == 2 and service._features_bytes == sum(f.nbytes for f in kept) <= batcher.FEATURES_BUDGET
    assert service.features(texts[-1]) is kept[-1]  # the newest stay
    monkeypatch.setattr(batcher, "FEATURES_BUDGET", 1)
    service.features("a short text")  # over budget on its own: still kept, everything older goes
    assert len(service._features) == 1 and service._features_bytes == service.features("a short text").nbytes
    service.close()
