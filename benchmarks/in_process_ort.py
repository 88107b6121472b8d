"""The ceiling the served compute path is compared with: the same ONNX file run by ONNX Runtime in one process,
at each batch size, with the server's session settings.

    python benchmarks/in_process_ort.py ONNX TOKENS.npz [--batches 1,8,16,32,64] [--seconds 3] [--threads 0]

TOKENS.npz holds input_ids and attention_mask rows. Prints one JSON line: {batch: sequences per second}. Run by
benchmarks/bench_serving.py with the serving environment's Python, so it is the ONNX Runtime the server runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run by a Python without tritonforge installed
from tritonforge.serving.runner import session as runner_session  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx")
    parser.add_argument("tokens")
    parser.add_argument("--batches", default="1,8,16,32,64")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    session = runner_session(args.onnx, args.threads)  # the server's in-process settings
    data = np.load(args.tokens)
    ids, mask = data["input_ids"], data["attention_mask"]
    out = {}
    for b in (int(x) for x in args.batches.split(",")):
        feed = {"input_ids": ids[:b], "attention_mask": mask[:b]}
        for _ in range(3):
            session.run(None, feed)
        start, runs = time.perf_counter(), 0
        while time.perf_counter() - start < args.seconds:
            session.run(None, feed)
            runs += 1
        out[b] = runs * b / (time.perf_counter() - start)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
