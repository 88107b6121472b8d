"""The peer a user would pick instead: PyTriton serving the same ONNX file through ONNX Runtime with the same
settings (intra-op threads, inter-op 1, full graph optimisation), token ids in, dynamic batching without delay.

    python benchmarks/pytriton_peer.py ONNX --grpc-port P --http-port P --metrics-port P [--threads 0] [--instances 1]

Run by benchmarks/bench_serving.py as a process of its own (PyTriton needs numpy<2 and its own tritonserver).
Prints "ready" on stdout once it serves; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run by a Python without tritonforge installed
from tritonforge.serving.runner import session as runner_session  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx")
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=64)
    args = parser.parse_args()

    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    def infer_func():
        session = runner_session(args.onnx, args.threads)  # the server's in-process settings

        @batch
        def infer(input_ids: np.ndarray, attention_mask: np.ndarray):
            (embedding,) = session.run(["embedding"], {"input_ids": input_ids, "attention_mask": attention_mask})
            return {"embedding": embedding}

        return infer

    config = TritonConfig(
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        grpc_address="127.0.0.1",
        http_address="127.0.0.1",
        metrics_address="127.0.0.1",
        exit_on_error=True,
    )
    # PyTriton guards the statistics endpoint (which perf_analyzer reads) with a token by default; on loopback,
    # for a benchmark, it is opened as tritonforge's local server has it.
    with Triton(config=config, security_config=TritonSecurityConfig(restricted_endpoints=[])) as triton:
        triton.bind(
            "minilm_pytriton",
            [infer_func() for _ in range(args.instances)],
            inputs=[
                Tensor(name="input_ids", dtype=np.int64, shape=(-1,)),
                Tensor(name="attention_mask", dtype=np.int64, shape=(-1,)),
            ],
            outputs=[Tensor(name="embedding", dtype=np.float32, shape=(384,))],
            config=ModelConfig(max_batch_size=args.max_batch, batcher=DynamicBatcher(max_queue_delay_microseconds=0)),
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        triton.run()
        print("ready", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
