"""The serving logic's own cost on a cache miss, with the model's compute taken out.

On a shared 2-core machine a real runner's latency wanders by about a millisecond between rounds, which hides
sub-millisecond overheads. This measurement copies a build's cache and router models unchanged into a scratch
repository (a cache that sits before the tokenizer is re-pointed at the router and takes its token inputs:
the same code on the same inputs as the router) and puts a zero-compute stand-in (`floor_models/zero_runner.py`, zeros of the right shapes, the
runner's own config) behind them under the runner's name. Beside that chain it adds two bare BLS pass-throughs
(`floor_models/relay.py`) as the floor: what one and two Python-backend hops cost on this machine with no
logic at all; and a copy of the router with Triton's own response cache switched on (what `cache: {kind: triton}`
does on the ensemble: no Python cache hop). perf_analyzer measures every entry at concurrency 1 with unique
inputs, interleaved over rounds.

    python -m benchmarks.miss_path_floor [--repo model_repository] [--model minilm]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tritonforge.errors import TritonforgeError
from tritonforge.cli.render import console
from tritonforge.repository.config import read_config, write_config
from tritonforge.server.process import LocalTritonServer
from tritonforge.perf.analyzer import MeasureSettings, check_binary, measure
from tritonforge.perf.inputs import Sample, model_samples, unique_inputs
from tritonforge.perf.triton_stats import model_stats, stats_of

FLOOR_MODELS = Path(__file__).parent / "floor_models"
RELAY_1, RELAY_2 = "tf_floor_relay", "tf_floor_relay_relay"
TRITON_CACHED_ROUTER = "tf_floor_router_triton_cache"
TRITON_CACHE_BYTES = 256 * 2**20
ROUNDS = 5


def chain_names(repo: Path, model: str) -> dict[str, str]:
    """The cache, the router and the runner a miss reaches (the router's first Python-backend rung)."""
    router = f"{model}_router"
    params = read_config(repo / router / "config.pbtxt").parameters
    runners = [r["model"] for r in json.loads(params["rungs"].string_value)
               if (repo / r["model"] / "config.pbtxt").is_file()
               and read_config(repo / r["model"] / "config.pbtxt").backend == "python"]
    if not (repo / f"{model}_cache").is_dir() or not runners:
        raise FileNotFoundError(f"{repo}: '{model}' has no cache model or no Python-backend rung to stand in for")
    return {"cache": f"{model}_cache", "router": router, "runner": runners[0]}


def _python_model(dest: Path, source: Path, config) -> None:
    (dest / "1").mkdir(parents=True)
    shutil.copyfile(source, dest / "1" / "model.py")
    config.ClearField("version_policy")  # version 1 here, whichever version the build published
    write_config(config, dest)


def floor_repository(repo: Path, model: str, dest: Path) -> dict[str, str]:
    """Write the scratch repository into `dest`; returns the model name of each measured entry."""
    names = chain_names(repo, model)
    for role in ("cache", "router"):
        shutil.copytree(repo / names[role], dest / names[role], ignore=shutil.ignore_patterns("__pycache__"))
    # A cache before the tokenizer is re-pointed at the router and given its inputs: the same code on tokens.
    cache_cfg, router_cfg = (read_config(repo / names[r] / "config.pbtxt") for r in ("cache", "router"))
    del cache_cfg.input[:]
    cache_cfg.input.extend(router_cfg.input)
    cache_cfg.parameters["target"].string_value = names["router"]
    write_config(cache_cfg, dest / names["cache"])
    # Triton's own response cache (what `cache: {kind: triton}` enables on the ensemble) on a copy of the router
    shutil.copytree(repo / names["router"], dest / TRITON_CACHED_ROUTER, ignore=shutil.ignore_patterns("__pycache__"))
    cached = read_config(repo / names["router"] / "config.pbtxt")
    cached.name = TRITON_CACHED_ROUTER
    cached.response_cache.enable = True
    write_config(cached, dest / TRITON_CACHED_ROUTER)
    runner_cfg = read_config(repo / names["runner"] / "config.pbtxt")
    _python_model(dest / names["runner"], FLOOR_MODELS / "zero_runner.py", runner_cfg)
    for relay, target in ((RELAY_1, names["runner"]), (RELAY_2, RELAY_1)):
        cfg = type(runner_cfg)()
        cfg.CopyFrom(runner_cfg)
        cfg.name = relay
        cfg.ClearField("model_warmup")
        cfg.ClearField("parameters")
        cfg.dynamic_batching.Clear()  # like the logic models: batch what queues, never wait
        cfg.parameters["target"].string_value = target
        _python_model(dest / relay, FLOOR_MODELS / "relay.py", cfg)
    return {"runner": names["runner"], "router": names["router"], "cache": names["cache"],
            "router_triton_cache": TRITON_CACHED_ROUTER, "one_hop": RELAY_1, "two_hops": RELAY_2}


def measure_floor(repo: Path, model: str, samples: list[Sample], rounds: int = ROUNDS,
                  interval_ms: int = 2000) -> dict:
    """p50 (ms) per entry and round, and the medians of the per-round differences to the zero runner."""
    import tritonclient.grpc as grpcclient

    check_binary()
    with tempfile.TemporaryDirectory(prefix="tf-floor-") as tmp:
        tmp_path = Path(tmp)
        entries = floor_repository(Path(repo), model, tmp_path / "repo")
        rows: dict[str, list[float]] = {role: [] for role in entries}
        missed_router = []
        with LocalTritonServer(tmp_path / "repo", load_models=list(entries.values()),
                               cache_size=TRITON_CACHE_BYTES) as server:
            settings = MeasureSettings(url=server.grpc_url, measurement_interval_ms=interval_ms)
            admin = grpcclient.InferenceServerClient(server.grpc_url)
            for k in range(rounds + 1):  # round 0 warms up and is dropped
                data = unique_inputs(samples, 30_000, tmp_path / f"r{k}.json")
                for role, name in entries.items():
                    before = stats_of(admin, [entries["cache"], entries["router"]])
                    p50 = measure(name, settings, 1, 1, None, data).p50_us / 1000
                    if not k:
                        continue
                    rows[role].append(p50)
                    if role == "cache":  # every request must have missed, i.e. reached the router
                        after = stats_of(admin, list(before))
                        missed_router.append(tuple((after[m] - before[m]).success for m in before))
            triton_cache_hits = model_stats(admin, TRITON_CACHED_ROUTER).cache_hits
            admin.close()
    med = lambda role: float(np.median(np.subtract(rows[role], rows["runner"])))  # noqa: E731
    return {
        "rounds_p50_ms": rows,
        "router_ms": med("router"),
        "cache_router_ms": med("cache"),
        "triton_cache_router_ms": med("router_triton_cache"),
        "one_hop_ms": med("one_hop"),
        "two_hops_ms": med("two_hops"),
        "cache_requests_vs_router_requests": missed_router,
        "cache_hits": sum(max(c - r, 0) for c, r in missed_router),  # should be 0: inputs are unique
        "triton_cache_hits": triton_cache_hits,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("model_repository"))
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    repo = args.repo.absolute()
    try:
        res = measure_floor(repo, args.model, model_samples(repo, f"{args.model}_router"), args.rounds)
    except (FileNotFoundError, TritonforgeError) as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    console.print_json(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
