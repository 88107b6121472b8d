"""Serving benchmarks for the MiniLM text-embedding service, measured side by side in one run.

    python -m perf.bench_serving [--repo model_repository] [--out perf_results/bench_serving.json]

1. cache hit p50 against cache miss p50 through the public ensemble (concurrency 1; repeated vs unique texts);
2. cache + router overhead on the miss path: p50 of minilm_cache (-> router -> runner) minus p50 of the
   in-process runner model called directly, same unique token inputs, concurrency 1;
3. texts of 8-16 tokens at concurrency 16 (unique, so every request computes): served throughput against the
   in-process ONNX Runtime throughput of the same ONNX file at its best batch size, measured in this process;
4. dynamic batching on against off (every model of the build reloaded without it), concurrency 16, unique texts.

Needs `tritonforge build examples/minilm/spec.yaml` first. Starts the local tritonserver itself.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.table import Table

from builder.ort_runtime import OrtModel
from builder.render import console
from builder.spec import parse_spec
from builder.triton_server import LocalTritonServer
from perf.analyzer import MeasureSettings, check_binary, measure
from perf.config_search import Candidate, apply, compute_models, default_candidate, logic_models, restore
from perf.inputs import model_samples, select, write_input_json

MODEL = "minilm"
MODEL_TEXT = "text"


def _tokenizer(repo: Path):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(repo / f"{MODEL}_tokenizer" / "1" / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def short_texts(repo: Path, n: int, lo: int = 8, hi: int = 16) -> list[str]:
    """n distinct texts of lo..hi tokens ([CLS] and [SEP] included): stored sample texts, numbered."""
    tok = _tokenizer(repo)
    base = [str(s[MODEL_TEXT][0]) for s in model_samples(repo, MODEL)]
    out: list[str] = []
    i = 0
    while len(out) < n and i < 50 * n:
        words = base[i % len(base)].split()
        text = " ".join(words[: 6 + (i % 5)]) + f" {i}"
        if lo <= len(tok.encode(text).ids) <= hi:
            out.append(text)
        i += 1
    return out



def _text_data(texts: list[str], path: Path) -> Path:
    return write_input_json([{MODEL_TEXT: np.array([t], dtype=object)} for t in texts], path)


def in_process_best(repo: Path, texts: list[str], batch_sizes=(1, 8, 16, 32, 64), seconds: float = 3.0) -> dict:
    """Throughput of the runner's ONNX file in this process, texts padded to 16 tokens as the server does."""
    tok = _tokenizer(repo)
    tok.enable_padding(length=16)
    tok.enable_truncation(16)
    model = OrtModel(repo / f"{MODEL}_ort" / "1" / "model.onnx", ["embedding"])
    results = {}
    for b in batch_sizes:
        enc = tok.encode_batch(texts[:b])
        batch = {"input_ids": np.array([e.ids for e in enc], np.int64),
                 "attention_mask": np.array([e.attention_mask for e in enc], np.int64)}
        for _ in range(3):
            model.run(batch)
        start, runs = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            model.run(batch)
            runs += 1
        results[b] = runs * b / (time.perf_counter() - start)
    best = max(results, key=results.get)
    return {"per_batch": results, "best_batch": best, "best": results[best]}


def run(repo: Path) -> dict:
    check_binary()
    out: dict = {}
    settings1 = MeasureSettings(url="", measurement_interval_ms=2000, max_trials=6)
    with tempfile.TemporaryDirectory(prefix="tf-bench-") as tmp, \
            LocalTritonServer(repo, load_models=[MODEL]) as server:
        tmp_path = Path(tmp)
        s1 = MeasureSettings(**{**settings1.__dict__, "url": server.grpc_url})
        samples = model_samples(repo, MODEL)
        token_samples = model_samples(repo, f"{MODEL}_cache")

        console.print("1/4 cache hit against miss (concurrency 1)")
        miss = measure(MODEL, s1, 1, 1, None, write_input_json(select(samples, "unique", 4000, 0), tmp_path / "u1.json"))
        hit = measure(MODEL, s1, 1, 1, None, write_input_json(select(samples, "repeated", 8), tmp_path / "r.json"))
        out["cache"] = {"miss_p50_ms": miss.p50_us / 1000, "hit_p50_ms": hit.p50_us / 1000,
                        "ratio": hit.p50_us / miss.p50_us, "target": "<= 0.10"}

        console.print("2/4 cache + router overhead on the miss path (concurrency 1)")
        data = write_input_json(select(token_samples, "unique", 4000, 10_000), tmp_path / "tok1.json")
        direct = measure(f"{MODEL}_ort", s1, 1, 1, None, data)
        data = write_input_json(select(token_samples, "unique", 4000, 20_000), tmp_path / "tok2.json")
        chain = measure(f"{MODEL}_cache", s1, 1, 1, None, data)
        out["overhead"] = {"runner_p50_ms": direct.p50_us / 1000, "cache_router_runner_p50_ms": chain.p50_us / 1000,
                           "overhead_ms": (chain.p50_us - direct.p50_us) / 1000, "target": "<= 0.5 ms"}

        console.print("3/4 texts of 8-16 tokens at concurrency 16: served against in-process")
        texts = short_texts(repo, 6000)
        served = measure(MODEL, s1, 1, 16, None, _text_data(texts, tmp_path / "short.json"))
        ceiling = in_process_best(repo, texts)
        out["throughput"] = {"served_per_s": served.throughput, "served_p50_ms": served.p50_us / 1000,
                             "in_process_best_per_s": ceiling["best"], "in_process_best_batch": ceiling["best_batch"],
                             "in_process_per_batch": ceiling["per_batch"],
                             "ratio": served.throughput / ceiling["best"], "target": ">= 0.60"}

        console.print("4/4 dynamic batching on against off (concurrency 16)")
        import tritonclient.grpc as grpcclient

        admin = grpcclient.InferenceServerClient(server.grpc_url)
        compute, logic = compute_models(repo, MODEL), logic_models(repo, MODEL)
        spec_default = default_candidate(parse_spec(json.loads((repo / MODEL / "build_report.json").read_text())["spec"]))
        on = measure(MODEL, s1, 1, 16, None, _text_data(short_texts(repo, 6000)[::-1], tmp_path / "on.json"))
        apply(Candidate(None, (), spec_default.instance_count), repo, compute, admin, logic)
        off = measure(MODEL, s1, 1, 16, None, _text_data([t + " x" for t in texts], tmp_path / "off.json"))
        restore(admin, compute + logic)
        admin.close()
        out["batching"] = {"on_per_s": on.throughput, "off_per_s": off.throughput, "on_p50_ms": on.p50_us / 1000,
                           "off_p50_ms": off.p50_us / 1000, "ratio": on.throughput / off.throughput}
        out["points"] = {k: p.to_dict() for k, p in (("miss", miss), ("hit", hit), ("runner", direct),
                                                      ("cache_chain", chain), ("served_c16", served),
                                                      ("batching_on", on), ("batching_off", off))}
    return out


def table(res: dict) -> Table:
    t = Table(title="MiniLM serving benchmarks (one run, local CPU tritonserver)", title_justify="left")
    for col in ("measure", "value", "target", "met"):
        t.add_column(col)
    c, o, th, b = res["cache"], res["overhead"], res["throughput"], res["batching"]
    t.add_row("cache hit p50 / miss p50 (c1)", f"{c['hit_p50_ms']:.2f} / {c['miss_p50_ms']:.2f} ms = {c['ratio']:.3f}",
              "<= 0.10", "yes" if c["ratio"] <= 0.10 else "no")
    t.add_row("cache+router overhead on a miss (c1)",
              f"{o['cache_router_runner_p50_ms']:.2f} - {o['runner_p50_ms']:.2f} = {o['overhead_ms']:.2f} ms",
              "<= 0.5 ms", "yes" if o["overhead_ms"] <= 0.5 else "no")
    t.add_row("served / in-process throughput, 8-16 tokens (c16)",
              f"{th['served_per_s']:.0f} / {th['in_process_best_per_s']:.0f} (b{th['in_process_best_batch']}) = {th['ratio']:.2f}",
              ">= 0.60", "yes" if th["ratio"] >= 0.60 else "no")
    t.add_row("dynamic batching on / off (c16)", f"{b['on_per_s']:.0f} / {b['off_per_s']:.0f} = {b['ratio']:.2f}x", "-", "-")
    return t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("model_repository"))
    parser.add_argument("--out", type=Path, default=Path("perf_results/bench_serving.json"))
    args = parser.parse_args()
    res = run(args.repo.absolute())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    console.print(table(res))
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
