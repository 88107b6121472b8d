"""Serving benchmarks of the MiniLM text service, every comparison measured side by side in one run, rounds
interleaved (A B C, A B C, ...), every round shown, the median per-round ratio reported.

    python -m benchmarks.bench_serving [--repo model_repository] [--rounds 5] [--out perf_results/bench_serving.json]

1. The public text entry on a cache miss (tokenizer, cache, router and the in-process runner in one hop) against
   the compute path alone (the runner model `minilm_ort`, token ids of the same lengths) and against PyTriton
   serving the same ONNX file with the same ONNX Runtime settings (token ids, no tokenizer, no cache), at
   concurrency 1 and 16, with unique texts of real lengths within the 16-token bucket.
2. The served compute path at concurrency 16 against in-process ONNX Runtime at its best batch size, the same
   file and settings, run by the serving environment's Python.
3. The serving logic's own cost on a miss: the public model against the runner model, both with a zero-compute
   ONNX file of the same signature (a scratch repository), concurrency 1.
4. A cache hit (a few repeated texts) against a miss (unique texts), concurrency 1.
5. Batching settings of the public model at concurrency 1 and 16: none, no queue delay (the default), 1 ms.

Needs `tritonforge build examples/minilm/spec.yaml` (make demo) first. Starts the servers itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from google.protobuf import json_format
from rich.table import Table

from tritonforge.cli.render import console
from tritonforge.perf.analyzer import MeasureSettings, PerfPoint, check_binary, measure
from tritonforge.perf.inputs import fresh_start, model_samples, select, write_input_json
from tritonforge.perf.sweep import server_counters
from tritonforge.repository.config import read_config
from tritonforge.repository.reader import Repository
from tritonforge.server.process import LocalTritonServer
from tritonforge.serving.settings import PublicSettings
from tritonforge.serving.tokenize import TextEncoder
from tritonforge.testing.ports import free_ports

MODEL = "minilm"
BENCH = Path(__file__).resolve().parent
BUCKET = 16


# ---- inputs ---------------------------------------------------------------------------------------------
class Texts:
    """Unique texts of real lengths within one token bucket, and their token ids as the public model makes them."""

    def __init__(self, repo: Path) -> None:
        repository = Repository(repo)
        settings = repository.settings(MODEL)
        assert isinstance(settings, PublicSettings) and settings.preprocess is not None
        self.encoder = TextEncoder(
            repository.file(MODEL, "tokenizer.json"), settings.preprocess, [t.name for t in settings.model_inputs]
        )
        self.samples = model_samples(repo, MODEL)
        self.text_input = settings.preprocess.text_input

    def texts(self, n: int) -> list[str]:
        out: list[str] = []
        while len(out) < n:
            batch = select(self.samples, "unique", 2 * n, fresh_start(2 * n))
            for s in batch:
                text = str(s[self.text_input][0])
                if len(self.encoder.tokenizer.encode(text).ids) <= BUCKET:
                    out.append(text)
        return out[:n]

    def text_file(self, texts: list[str], path: Path) -> Path:
        return write_input_json([{self.text_input: np.array([t], dtype=object)} for t in texts], path)

    def token_file(self, texts: list[str], path: Path) -> Path:
        encoded = self.encoder.encode([[t] for t in texts])
        return write_input_json([{k: v[0] for k, v in e.items()} for e in encoded], path)

    def token_npz(self, texts: list[str], path: Path) -> Path:
        encoded = self.encoder.encode([texts])[0]
        np.savez(path, **encoded)
        return path


# ---- servers -----------------------------------------------------------------------------------------------
class PyTritonPeer:
    """benchmarks/pytriton_peer.py in a process of its own."""

    def __init__(self, onnx: Path, threads: int, instances: int, python: str) -> None:
        self.http, self.grpc, self.metrics = free_ports(3)
        self.log = tempfile.NamedTemporaryFile(prefix="pytriton-", suffix=".log", delete=False)  # noqa: SIM115 - open for the process's life
        self.proc = subprocess.Popen(
            [
                python,
                str(BENCH / "pytriton_peer.py"),
                str(onnx),
                "--grpc-port",
                str(self.grpc),
                "--http-port",
                str(self.http),
                "--metrics-port",
                str(self.metrics),
                "--threads",
                str(threads),
                "--instances",
                str(instances),
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,
        )
        for line in self.proc.stdout:  # PyTriton writes to stdout too; "ready" is ours
            if line.strip() == "ready":
                return
        raise RuntimeError(f"the PyTriton peer did not start: {Path(self.log.name).read_text()[-2000:]}")

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def zero_onnx(path: Path, width: int = 384) -> Path:
    """A graph of the runner's signature that answers zeros at once: what remains is the serving cost."""
    import onnx
    from onnx import TensorProto, helper

    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])
    out = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", width])
    nodes = [
        helper.make_node("Shape", ["input_ids"], ["shape"], end=1),
        helper.make_node("Constant", [], ["width"], value=helper.make_tensor("w", TensorProto.INT64, [1], [width])),
        helper.make_node("Concat", ["shape", "width"], ["out_shape"], axis=0),
        helper.make_node(
            "ConstantOfShape", ["out_shape"], ["embedding"], value=helper.make_tensor("z", TensorProto.FLOAT, [1], [0.0])
        ),
        helper.make_node("Identity", ["attention_mask"], ["unused"]),
    ]
    graph = helper.make_graph(nodes, "zero", [ids, mask], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def floor_repository(repo: Path, dest: Path) -> Path:
    """The build's public model and runner, unchanged but for their ONNX files: zero-compute ones (with their
    sha256 in the models' settings, which the models check at load)."""
    from tritonforge.hashing import sha256_file
    from tritonforge.repository.config import write_config
    from tritonforge.serving.settings import PARAMETER

    repository = Repository(repo)
    for model in (MODEL, repository.runner(MODEL)):
        assert model is not None
        shutil.copytree(repo / model, dest / model)  # the version directory's `__pycache__` is a file the build wrote
        version_dir = dest / model / repository.version_dir(model).name
        config = read_config(dest / model / "config.pbtxt")
        settings = json.loads(config.parameters[PARAMETER].string_value)
        for onnx_file in version_dir.glob("*.onnx"):
            zero_onnx(onnx_file)
            settings["files"][onnx_file.name] = sha256_file(onnx_file)
        config.parameters[PARAMETER].string_value = json.dumps(settings, sort_keys=True, separators=(",", ":"))
        write_config(config, dest / model)
    return dest


# ---- measuring ---------------------------------------------------------------------------------------------
@dataclass
class Series:
    """One quantity measured every round."""

    label: str
    points: list[PerfPoint] = field(default_factory=list)
    hits: list[float] = field(default_factory=list)
    voided: int = 0  # miss points the cache answered, measured again

    def throughput(self) -> list[float]:
        return [p.throughput for p in self.points]

    def p50_ms(self) -> list[float]:
        return [p.p50_us / 1000 for p in self.points]


def median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


class Bench:
    def __init__(self, repo: Path, rounds: int, tmp: Path, settings: MeasureSettings) -> None:
        self.repo, self.rounds, self.tmp, self.settings = repo, rounds, tmp, settings
        self.texts = Texts(repo)
        self.series: dict[str, Series] = {}
        self.k = 0

    def point(
        self,
        key: str,
        label: str,
        url: str,
        model: str,
        concurrency: int,
        data,
        metrics_url: str | None = None,
        remake=None,
    ) -> PerfPoint:
        """One point of series `key`. A miss point (`remake` gives fresh, twice as many inputs) that the cache
        answered at all is voided and measured again, up to twice: a miss series never reports cache answers."""
        from dataclasses import replace

        series = self.series.setdefault(key, Series(label))
        for attempt in range(3):
            before = server_counters(metrics_url, [model])
            point = measure(model, replace(self.settings, url=url), 1, concurrency, None, data)
            after = server_counters(metrics_url, [model])
            hits = (after.hits - before.hits) if before and after else 0.0
            if remake is None or hits == 0 or attempt == 2:
                break
            console.print(f"  {label}: voided ({hits:.0f} cache hits in a miss series); again with more inputs", markup=False)
            series.voided += 1
            data = remake(attempt + 1)
        if before and after:
            series.hits.append(hits)
        series.points.append(point)
        console.print(f"  {label:58s} {point.throughput:8.1f}/s  p50 {point.p50_us / 1000:6.2f} ms", markup=False)
        return point

    def file(self, kind: str, n: int):
        """perf_analyzer input data: `n` texts never sent before, new ones for each further attempt at a point
        (an unstable point is measured again, and resent texts would be cache hits)."""
        self.k += 1
        base = self.tmp / f"{kind}{self.k}"

        def for_attempt(attempt: int) -> Path:
            texts, path = self.texts.texts(n), base.with_suffix(f".{attempt}.json")
            return self.texts.text_file(texts, path) if kind == "text" else self.texts.token_file(texts, path)

        return for_attempt


def _set_batching(admin, repo: Path, delay: int | None) -> None:
    cfg = read_config(repo / MODEL / "config.pbtxt")
    cfg.ClearField("dynamic_batching")
    if delay is not None:
        cfg.dynamic_batching.max_queue_delay_microseconds = delay
    admin.load_model(MODEL, config=json_format.MessageToJson(cfg))


def run(repo: Path, rounds: int, serving_python: str, peer_python: str) -> dict:
    check_binary()
    repository = Repository(repo)
    runner = repository.runner(MODEL)
    spec = repository.report(MODEL).spec["serving"]
    threads, instances = spec["intra_op_threads"], spec["instance_count"]
    settings = MeasureSettings(url="", measurement_interval_ms=1500, max_trials=6, stability_pct=15)
    out: dict = {
        "settings": {
            "intra_op_threads": threads,
            "instance_count": instances,
            "rounds": rounds,
            "runner_variant": repository.role(runner).variant,
        }
    }
    with tempfile.TemporaryDirectory(prefix="tf-bench-") as tmp_name:
        tmp = Path(tmp_name)
        bench = Bench(repo, rounds, tmp, settings)
        floor = floor_repository(repo, tmp / "floor")
        npz = bench.texts.token_npz(bench.texts.texts(64), tmp / "tokens.npz")
        server = LocalTritonServer(repo, load_models=[MODEL]).start()
        floor_server = LocalTritonServer(floor).start()
        peer = PyTritonPeer(repository.file(runner), threads, instances, peer_python)
        ceilings = []
        try:
            for r in range(rounds):
                console.rule(f"round {r + 1} of {rounds}")
                for c in (1, 16):
                    n = 4000 if c == 1 else 15000
                    bench.point(
                        f"public_c{c}",
                        f"public text entry, miss, c{c}",
                        server.grpc_url,
                        MODEL,
                        c,
                        bench.file("text", n),
                        server.metrics_url,
                        remake=lambda k, n=n: bench.file("text", n * 2**k),
                    )
                    bench.point(
                        f"runner_c{c}",
                        f"compute path alone ({runner}), c{c}",
                        server.grpc_url,
                        runner,
                        c,
                        bench.file("tokens", n),
                    )
                    bench.point(
                        f"pytriton_c{c}",
                        f"PyTriton, same ONNX, token ids, c{c}",
                        peer.url,
                        "minilm_pytriton",
                        c,
                        bench.file("tokens", n),
                    )
                proc = subprocess.run(
                    [
                        serving_python,
                        str(BENCH / "in_process_ort.py"),
                        str(repository.file(runner)),
                        str(npz),
                        "--threads",
                        str(threads),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                ceiling = {int(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
                ceilings.append(ceiling)
                console.print(
                    f"  in-process ONNX Runtime, best batch {max(ceiling, key=ceiling.get)}: {max(ceiling.values()):.1f}/s",
                    markup=False,
                )
                # a zero-compute model answers ~2,000 requests a second: enough texts that none repeats in a point
                bench.point(
                    "floor_public",
                    "zero-compute public text entry, miss, c1",
                    floor_server.grpc_url,
                    MODEL,
                    1,
                    bench.file("text", 30000),
                    floor_server.metrics_url,
                    remake=lambda k: bench.file("text", 30000 * 2**k),
                )
                bench.point(
                    "floor_runner", "zero-compute runner, c1", floor_server.grpc_url, runner, 1, bench.file("tokens", 30000)
                )
                repeated = bench.texts.text_file(bench.texts.texts(8), tmp / f"repeated{r}.json")
                bench.point("hit_c1", "public text entry, cache hit, c1", server.grpc_url, MODEL, 1, repeated, server.metrics_url)
            admin = grpcclient.InferenceServerClient(server.grpc_url)
            for r in range(min(3, rounds)):
                console.rule(f"batching settings, round {r + 1}")
                for delay, label in ((None, "no dynamic batching"), (0, "no queue delay"), (1000, "1 ms delay")):
                    _set_batching(admin, repo, delay)
                    for c in (1, 16):
                        bench.point(
                            f"batching_{delay}_c{c}",
                            f"public, {label}, c{c}",
                            server.grpc_url,
                            MODEL,
                            c,
                            bench.file("text", 8000 if c == 1 else 15000),
                            server.metrics_url,
                            remake=lambda k, c=c: bench.file("text", (8000 if c == 1 else 15000) * 2**k),
                        )
            admin.load_model(MODEL, config=json_format.MessageToJson(read_config(repo / MODEL / "config.pbtxt")))
            admin.close()
        finally:
            peer.stop()
            for s in (server, floor_server):
                s.stop()
                s.cleanup()
    return summarise(bench.series, ceilings, out)


def _ratios(a: list[float], b: list[float]) -> list[float]:
    return [x / y for x, y in zip(a, b, strict=True)]


def summarise(series: dict[str, Series], ceilings: list[dict[int, float]], out: dict) -> dict:
    s = series
    best = [max(c.values()) for c in ceilings]
    reachable = [max(v for b, v in c.items() if b <= 16) for c in ceilings]  # c16 can never form a bigger batch
    rows = {
        "public_vs_runner_c16": _ratios(s["public_c16"].throughput(), s["runner_c16"].throughput()),
        "public_minus_runner_p50_c1_ms": [a - b for a, b in zip(s["public_c1"].p50_ms(), s["runner_c1"].p50_ms(), strict=True)],
        "public_vs_pytriton_c16": _ratios(s["public_c16"].throughput(), s["pytriton_c16"].throughput()),
        "public_vs_pytriton_c1": _ratios(s["public_c1"].throughput(), s["pytriton_c1"].throughput()),
        "runner_vs_in_process_best_c16": _ratios(s["runner_c16"].throughput(), best),
        "runner_vs_in_process_batch16_c16": _ratios(s["runner_c16"].throughput(), reachable),
        "public_vs_in_process_best_c16": _ratios(s["public_c16"].throughput(), best),
        "logic_cost_on_a_miss_ms": [a - b for a, b in zip(s["floor_public"].p50_ms(), s["floor_runner"].p50_ms(), strict=True)],
        "hit_over_miss_p50": _ratios(s["hit_c1"].p50_ms(), s["public_c1"].p50_ms()),
    }
    out["rounds"] = rows
    out["medians"] = {k: median(v) for k, v in rows.items()}
    out["series"] = {
        k: {
            "label": v.label,
            "throughput": v.throughput(),
            "p50_ms": v.p50_ms(),
            "cache_hits": v.hits,
            "voided": v.voided,
            "queue_ms": [p.server_queue_us / 1000 for p in v.points],
            "compute_ms": [p.server_compute_infer_us / 1000 for p in v.points],
        }
        for k, v in s.items()
    }
    out["in_process"] = ceilings
    return out


TARGETS = {
    "public_vs_runner_c16": (">= 0.9", lambda v: v >= 0.9),
    "public_minus_runner_p50_c1_ms": ("<= 0.5 ms", lambda v: v <= 0.5),
    "public_vs_pytriton_c16": (">= 1.2", lambda v: v >= 1.2),
    "public_vs_pytriton_c1": (">= 1.3", lambda v: v >= 1.3),
    "runner_vs_in_process_best_c16": (">= 0.8", lambda v: v >= 0.8),
    "logic_cost_on_a_miss_ms": ("<= 0.3 ms", lambda v: v <= 0.3),
    "hit_over_miss_p50": ("<= 0.10", lambda v: v <= 0.10),
}


def render(out: dict) -> None:
    table = Table(title="serving benchmarks (median of the per-round values; every round in brackets)", title_justify="left")
    for col in ("measure", "median", "rounds", "target", "met"):
        table.add_column(col)
    for key, values in out["rounds"].items():
        target, ok = TARGETS.get(key, ("-", lambda v: None))
        met = ok(out["medians"][key])
        table.add_row(
            key,
            f"{out['medians'][key]:.3f}",
            ", ".join(f"{v:.3f}" for v in values),
            target,
            "-" if met is None else ("yes" if met else "no"),
        )
    console.print(table)
    detail = Table(title="every point", title_justify="left")
    for col in ("series", "infer/s per round", "p50 ms per round", "queue ms", "cache hits"):
        detail.add_column(col)
    for v in out["series"].values():
        detail.add_row(
            v["label"],
            ", ".join(f"{x:.0f}" for x in v["throughput"]),
            ", ".join(f"{x:.2f}" for x in v["p50_ms"]),
            ", ".join(f"{x:.2f}" for x in v["queue_ms"]),
            ", ".join(f"{x:.0f}" for x in v["cache_hits"]) or "-",
        )
    console.print(detail)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("model_repository"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("perf_results/bench_serving.json"))
    args = parser.parse_args()
    out = run(args.repo.absolute(), args.rounds, serving_python(), peer_python())
    render(out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    return 0


def serving_python() -> str:
    """The local server's serving environment's Python (numpy<2, the ONNX Runtime the server runs)."""
    from tritonforge.server.environment import ServingEnvironment

    return str(ServingEnvironment.default().ensure().python)


PEER_REQUIREMENTS = ["nvidia-pytriton==0.7.0", "numpy==1.26.4", "onnxruntime==1.19.2"]  # the serving env's ORT


def peer_python() -> str:
    """A Python with PyTriton for the peer (it needs numpy<2 and brings its own tritonserver), made once in
    ~/.cache/tritonforge beside the serving environment, keyed by what it installs."""
    import hashlib
    import venv

    key = hashlib.sha256(" ".join(PEER_REQUIREMENTS).encode()).hexdigest()[:16]
    home = Path.home() / ".cache" / "tritonforge" / f"pytriton-peer-{key}"
    python = home / "bin" / "python"
    if not (home / ".complete").exists():
        console.print(f"making the PyTriton peer's environment in {home} ({', '.join(PEER_REQUIREMENTS)})")
        shutil.rmtree(home, ignore_errors=True)
        venv.EnvBuilder(with_pip=True).create(home)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PEER_REQUIREMENTS], check=True)
        (home / ".complete").write_text("")
    return str(python)


if __name__ == "__main__":
    raise SystemExit(main())
