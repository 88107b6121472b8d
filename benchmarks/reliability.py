"""Fault and load scenarios against the real local tritonserver, used by the tests (with assertions) and by

    python -m benchmarks.reliability [--repo model_repository] [--out docs/reliability.md]

which runs them all and writes the table in docs/reliability.md. Needs the digits and MiniLM builds in the
repository and redis-server on PATH.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis
import tritonclient.grpc as grpcclient

from tritonforge.hashing import sha256_tree
from tritonforge.build.ort_runtime import OrtModel
from tritonforge.build.serving_graph import METRICS_LAG_S
from tritonforge.repository.reader import Repository
from tritonforge.server.process import LocalTritonServer
from tritonforge.client import Client, ClientError

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    """One scenario: what was tried, how many requests, how many failed, how many answers were wrong."""

    scenario: str
    tried: str
    requests: int = 0
    failed: int = 0
    wrong: int = 0
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.wrong == 0


# ---- bad input ----------------------------------------------------------------------------------------
@dataclass
class BadRequest:
    name: str
    model: str
    inputs: Callable[[], list[grpcclient.InferInput]]
    expect: str  # fragment the server's error must contain


def _input(name: str, arr: np.ndarray, datatype: str) -> grpcclient.InferInput:
    inp = grpcclient.InferInput(name, list(arr.shape), datatype)
    inp.set_data_from_numpy(arr)
    return inp


def _nan_image() -> np.ndarray:
    x = np.zeros((1, 64), np.float32)
    x[0, 5] = np.nan
    return x


def _inf_image() -> np.ndarray:
    x = np.zeros((1, 64), np.float32)
    x[0, 7] = np.inf
    return x


BAD_REQUESTS = [
    BadRequest("wrong tensor name", "digits", lambda: [_input("img", np.zeros((1, 64), np.float32), "FP32")],
               "unexpected inference input 'img'"),
    BadRequest("wrong dtype", "digits", lambda: [_input("image", np.zeros((1, 64), np.float64), "FP64")],
               "data-type is 'FP64', but model 'digits' expects 'FP32'"),
    BadRequest("wrong shape", "digits", lambda: [_input("image", np.zeros((1, 63), np.float32), "FP32")],
               "unexpected shape for input 'image'"),
    BadRequest("batch over max_batch_size", "digits", lambda: [_input("image", np.zeros((65, 64), np.float32), "FP32")],
               "batch-size must be <= 64"),
    BadRequest("empty batch", "digits", lambda: [_input("image", np.zeros((0, 64), np.float32), "FP32")],
               "input byte size mismatch for input 'image'"),
    BadRequest("NaN", "digits", lambda: [_input("image", _nan_image(), "FP32")], "input 'image' holds 1 NaN or Inf"),
    BadRequest("Inf", "digits", lambda: [_input("image", _inf_image(), "FP32")], "input 'image' holds 1 NaN or Inf"),
    BadRequest("string of 1 MB", "minilm", lambda: [_input("text", np.array([["x" * 2**20]], dtype=object), "BYTES")],
               "is 1048576 bytes; the limit is 65536"),
    BadRequest("invalid UTF-8", "minilm", lambda: [_input("text", np.array([[b"\xff\xfe"]], dtype=object), "BYTES")],
               "not valid UTF-8"),
    BadRequest("numbers for a text input", "minilm", lambda: [_input("text", np.zeros((1, 1), np.float32), "FP32")],
               "data-type is 'FP32', but model 'minilm' expects 'BYTES'"),
    BadRequest("unknown model", "no_such_model", lambda: [_input("image", np.zeros((1, 64), np.float32), "FP32")],
               "unknown model: 'no_such_model'"),
]


def bad_requests(url: str) -> list[Result]:
    """Each malformed request sent raw (no client-side checks): the server must refuse it naming the problem,
    then answer a good request."""
    raw = grpcclient.InferenceServerClient(url)
    results = []
    try:
        for case in BAD_REQUESTS:
            r = Result(f"bad input: {case.name}", f"raw gRPC request to '{case.model}', then a good request", 2)
            try:
                raw.infer(case.model, case.inputs())
                r.failed += 1
                r.details.append("accepted")
            except Exception as e:
                message = str(e)
                r.details.append(message.split("] ", 2)[-1][:140])
                if case.expect not in message:
                    r.failed += 1
            good = _good_request(raw, case.model)
            if not good:
                r.failed += 1
                r.details.append("the next good request failed")
            results.append(r)
    finally:
        raw.close()
    return results


def _good_request(raw: grpcclient.InferenceServerClient, model: str) -> bool:
    try:
        if model == "minilm":
            out = raw.infer("minilm", [_input("text", np.array([["the server is still up"]], dtype=object), "BYTES")])
            return out.as_numpy("embedding").shape == (1, 384)
        out = raw.infer("digits", [_input("image", np.zeros((1, 64), np.float32), "FP32")])
        return out.as_numpy("logits").shape == (1, 10)
    except Exception:
        return False


# ---- several replicas, one killed ----------------------------------------------------------------------
def _digits_inputs(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((1, 64), dtype=np.float32) for _ in range(n)]


def _kill_group(server: LocalTritonServer) -> None:
    assert server.process is not None
    os.killpg(server.process.pid, signal.SIGKILL)


def _cache_counter(server: LocalTritonServer, name: str) -> float:
    import urllib.request

    time.sleep(METRICS_LAG_S)  # the cache sends its counters off the request path

    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def wait_stored(redis_url: str, before: int, timeout: float = 10.0) -> bool:
    """Wait until the cache's writer thread (off the request path) has stored a key beyond `before` keys."""
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while client.dbsize() <= before:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def replica_failover(repo: Path, redis_url: str, requests: int = 2000, concurrency: int = 16) -> list[Result]:
    """Two servers sharing one Redis: a miss on A is a hit on B; then a load through a client holding both
    endpoints, and server A killed (SIGKILL) a third of the way through."""
    env = {"TRITONFORGE_REDIS_URL": redis_url}
    a, b = LocalTritonServer(repo, load_models=["digits"], env=env), LocalTritonServer(repo, load_models=["digits"], env=env)
    a.start()
    try:
        b.start()
        shared = Result("cache shared between replicas", "a request answered by A, then the same by B", 2)
        x = _digits_inputs(1, seed=int(time.time()))[0]
        with Client(a.grpc_url) as ca, Client(b.grpc_url) as cb:
            stored = redis.Redis.from_url(redis_url).dbsize()
            first = ca.infer("digits", {"image": x})["logits"]
            wait_stored(redis_url, stored)
            hits_before = _cache_counter(b, "tritonforge_cache_hits_total")
            second = cb.infer("digits", {"image": x})["logits"]
        hit = _cache_counter(b, "tritonforge_cache_hits_total") - hits_before
        shared.details.append(f"hits on B: {hit:.0f}; identical bytes: {first.tobytes() == second.tobytes()}")
        shared.wrong = int(hit != 1 or first.tobytes() != second.tobytes())

        load = Result("replica killed mid-load", f"{concurrency} threads, client with 2 endpoints, "
                                                 "server A SIGKILLed after a third", requests)
        inputs = _digits_inputs(requests, seed=7)
        reference = OrtModel(Repository(repo).file("digits_ort"), ["logits"])
        done = []
        lock = threading.Lock()
        with Client([a.grpc_url, b.grpc_url], timeout=60, retries=6) as client:
            def one(i: int) -> tuple[int, np.ndarray | None, str]:
                try:
                    out = client.infer("digits", {"image": inputs[i]})["logits"]
                    with lock:
                        done.append(i)
                    return i, out, ""
                except ClientError as e:
                    return i, None, str(e)

            with ThreadPoolExecutor(concurrency) as pool:
                futures = [pool.submit(one, i) for i in range(requests)]
                while len(done) < requests // 3:
                    time.sleep(0.005)
                _kill_group(a)
                load.details.append(f"A killed after {len(done)} answers")
                results = [f.result() for f in futures]
        for i, out, error in results:
            if out is None:
                load.failed += 1
                load.details.append(error[:140])
            elif not np.allclose(out, reference.run({"image": inputs[i]})["logits"], atol=1e-5):
                load.wrong += 1
        return [shared, load]
    finally:
        a.stop()
        a.cleanup()
        b.stop()
        b.cleanup()


# ---- a build killed half way ---------------------------------------------------------------------------
# The build child pauses at the last moment before it publishes (staging fully written, swap not yet done),
# so the SIGKILL lands at the same, worst, point on every run instead of racing a polling loop.
_PAUSED_BUILD = """
import os, pathlib, sys, time
from tritonforge.repository import publish
def _pause_before_swap(self, _marker=pathlib.Path(sys.argv[1])):
    _marker.with_suffix(".part").write_text(str(self.txn))
    os.replace(_marker.with_suffix(".part"), _marker)
    time.sleep(3600)
publish.Publication.commit = _pause_before_swap
sys.argv = ["tritonforge"] + sys.argv[2:]
from tritonforge.cli.main import main
main()
"""


def killed_build(spec: Path, repo: Path, load_requests: int = 300) -> Result:
    """`tritonforge build --force` SIGKILLed with its staging copy fully written but not yet swapped in: the
    previous repository stays, byte for byte, and serves a load right after."""
    before = sha256_tree(repo)
    with tempfile.TemporaryDirectory() as tmp:
        marker, log = Path(tmp) / "staged", Path(tmp) / "stderr.log"
        with open(log, "w") as stderr:
            proc = subprocess.Popen([sys.executable, "-c", _PAUSED_BUILD, str(marker), "build", str(spec),
                                     "--repo", str(repo), "--force"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
            deadline = time.monotonic() + 600
            while proc.poll() is None and not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            staged = marker.read_text() if marker.exists() else None
            proc.kill()
            proc.wait(30)
        err = log.read_text(errors="replace")
    r = Result("build killed (kill -9)", "tritonforge build --force killed with its staging copy written, "
               "before the swap; then a load", load_requests)
    if staged is None:
        r.wrong += 1
        r.details.append(f"the build never reached its swap (exit {proc.returncode}): {err.strip()[-300:]}")
        return r
    if sha256_tree(repo) != before:
        r.wrong += 1
        r.details.append("repository changed")
    else:
        r.details.append("repository byte-identical to before")
    if not Path(staged).is_dir() or not any(Path(staged).rglob("config.pbtxt")):
        r.wrong += 1
        r.details.append(f"no staged models at {staged}: the kill did not land mid-publish")
    with LocalTritonServer(repo, load_models=["digits"]) as server, Client(server.grpc_url) as client:
        for x in _digits_inputs(load_requests, seed=11):
            try:
                client.infer("digits", {"image": x})
            except ClientError as e:
                r.failed += 1
                r.details.append(str(e)[:140])
    return r


# ---- the text service under load -----------------------------------------------------------------------
def texts(repo: Path, n: int) -> list[str]:
    """n distinct texts built from the model's stored sample texts."""
    from tritonforge.perf.inputs import model_samples

    base = [str(s["text"][0]) for s in model_samples(repo, "minilm")]
    k = len(base)
    return [f"{base[i % k]} {base[(i % k + i // k + 1) % k]}" for i in range(n)]


def direct_embeddings(repo: Path, items: list[str]) -> np.ndarray:
    """The same computation in-process: the repository's tokenizer.json and the ONNX file the in-process
    runner serves (the rung that answers on the local server)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Repository(repo).file("minilm_tokenizer")))
    tok.enable_truncation(128)
    tok.enable_padding()
    model = OrtModel(Repository(repo).file("minilm_ort"), ["embedding"])
    out = []
    for i in range(0, len(items), 64):
        enc = tok.encode_batch(items[i:i + 64])
        batch = {"input_ids": np.array([e.ids for e in enc], np.int64),
                 "attention_mask": np.array([e.attention_mask for e in enc], np.int64)}
        out.append(model.run(batch)["embedding"])
    return np.concatenate(out)


def _served_precision(repo: Path) -> tuple[str, float]:
    """(variant the in-process runner serves, the gate's min cosine) from the build report."""
    import json

    report = json.loads((repo / "minilm" / "build_report.json").read_text())
    return report["serving"]["in_process_runner"], float(report["gate"]["min_cosine"])


def ensemble_load(repo: Path, url: str, requests: int = 20000, concurrency: int = 64, distinct: int = 5000,
                  atol: float = 1e-4) -> Result:
    """`requests` texts (`distinct` different ones, each sent requests/distinct times, shuffled) through the
    MiniLM ensemble at `concurrency`: no error, and every answer is its own text's embedding: closest to its
    own direct computation of all `distinct`, and equal to it within `atol` when FP32 serves, or within the
    gate's cosine when a reduced-precision variant does (dynamic INT8 scales depend on the batch)."""
    items = texts(repo, distinct)
    order = [i % distinct for i in range(requests)]
    random.Random(5).shuffle(order)
    variant, min_cosine = _served_precision(repo)
    r = Result("text service under load", f"{requests} requests ({distinct} distinct texts, repeats hit the "
                                          f"cache), {concurrency} in flight, served by {variant}", requests)
    answers: dict[int, list[np.ndarray]] = {}
    lock = threading.Lock()
    with Client(url, timeout=120) as client:
        def one(i: int) -> str:
            try:
                emb = client.infer("minilm", {"text": np.array([[items[i]]], dtype=object)})["embedding"][0]
            except ClientError as e:
                return str(e)
            with lock:
                answers.setdefault(i, []).append(emb)
            return ""

        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            errors = [e for e in pool.map(one, order) if e]
        elapsed = time.perf_counter() - start
    r.failed = len(errors)
    r.details += errors[:3]
    direct = direct_embeddings(repo, items)
    exact = variant == "onnx_fp32"
    worst_diff, worst_cos = 0.0, 1.0
    for i, embs in answers.items():
        for emb in embs:
            diff = float(np.abs(emb - direct[i]).max())
            cos = float(emb @ direct[i] / (np.linalg.norm(emb) * np.linalg.norm(direct[i])))
            worst_diff, worst_cos = max(worst_diff, diff), min(worst_cos, cos)
            nearest = int(np.argmax(direct @ emb))
            if nearest != i or (diff > atol if exact else cos < min_cosine):
                r.wrong += 1
    check = f"max abs <= {atol:g}" if exact else f"cosine >= {min_cosine:g}"
    r.details.append(f"{requests / elapsed:.0f} requests/s; each answer nearest its own text and {check}: "
                     f"largest difference {worst_diff:.2g}, lowest cosine {worst_cos:.5f}")
    return r


# ---- Redis killed mid-load -----------------------------------------------------------------------------
def redis_killed(repo: Path, requests: int = 1000, concurrency: int = 8) -> Result:
    """The shared Redis killed during a load through a Redis-backed cache: no request may fail."""
    from tritonforge.testing.redis import RedisServer

    redis = RedisServer().start()
    r = Result("Redis killed mid-load", f"{concurrency} threads, repeated inputs, redis-server SIGKILLed after a third",
               requests)
    try:
        with LocalTritonServer(repo, load_models=["digits"], env={"TRITONFORGE_REDIS_URL": redis.url}) as server, \
                Client(server.grpc_url) as client:
            inputs = _digits_inputs(50, seed=3)
            done = []

            def one(i: int) -> str:
                try:
                    client.infer("digits", {"image": inputs[i % 50]})
                    done.append(i)
                    return ""
                except ClientError as e:
                    return str(e)

            with ThreadPoolExecutor(concurrency) as pool:
                futures = [pool.submit(one, i) for i in range(requests)]
                while len(done) < requests // 3:
                    time.sleep(0.005)
                redis.kill()
                errors = [e for e in (f.result() for f in futures) if e]
            r.failed = len(errors)
            r.details.append(f"cache errors counted: {_cache_counter(server, 'tritonforge_cache_errors_total'):.0f}")
    finally:
        redis.stop()
    return r


def redis_backed_digits(dest: Path) -> Path:
    """The digits example built into `dest` with its response cache on Redis (for the replica scenarios)."""
    import yaml

    from tritonforge.build.pipeline import build

    spec = ROOT / "examples" / "digits" / "spec.yaml"
    data = yaml.safe_load(spec.read_text())
    data["serving"]["cache"] = {"kind": "redis", "ttl_s": 300}
    variant = spec.with_name(".reliability-spec.yaml")  # beside the original, so relative paths still resolve
    variant.write_text(yaml.safe_dump(data))
    try:
        build(variant, dest)
    finally:
        variant.unlink()
    return dest


def markdown(results: list[Result], command: str) -> str:
    lines = [
        "# Reliability",
        "",
        "Faults and bad input against the real local tritonserver (CPU, Python backend), a real redis-server and",
        f"the project's gRPC client. Reproduce with `{command}` (after `make demo` has built the repository);",
        "the same scenarios run as tests in `tests/test_reliability.py`.",
        "",
        "| scenario | what was tried | requests | failed | wrong answers | notes |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        notes = "; ".join(d.replace("|", "/") for d in r.details)
        lines.append(f"| {r.scenario} | {r.tried} | {r.requests} | {r.failed} | {r.wrong} | {notes} |")
    lost = sum(r.failed + r.wrong for r in results)
    lines += ["", f"Requests lost or answered wrongly across all scenarios: **{lost}**.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    args = parser.parse_args()
    repo = args.repo.absolute()
    from tritonforge.testing.redis import RedisServer

    results: list[Result] = []
    with LocalTritonServer(repo, load_models=["digits", "minilm"]) as server:
        results += bad_requests(server.grpc_url)
        results.append(ensemble_load(repo, server.grpc_url))
    with tempfile.TemporaryDirectory(prefix="tf-redis-digits-") as tmp:
        redis_repo = redis_backed_digits(Path(tmp) / "model_repository")
        redis = RedisServer().start()
        try:
            results += replica_failover(redis_repo, redis.url)
        finally:
            redis.stop()
        results.append(redis_killed(redis_repo))
    with tempfile.TemporaryDirectory(prefix="tf-killed-build-") as tmp:
        copy = Path(tmp) / "model_repository"
        shutil.copytree(repo, copy)
        results.append(killed_build(ROOT / "examples" / "digits" / "spec.yaml", copy))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(results, "python -m benchmarks.reliability"))
    for r in results:
        print(f"{'ok ' if r.ok else 'BAD'} {r.scenario}: {r.requests} requests, {r.failed} failed, {r.wrong} wrong")
    print(f"wrote {args.out}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
