"""The readiness probe's sample and what its answer must agree with (tritonforge/server/probe.py).

The build writes beside the public model `probe_request.json` (one held-out sample as a KServe v2 JSON request
that bypasses the cache) and `probe_expected.json`: the FP32 reference outputs for that sample, each output's
kind as the gate judges it and the thresholds the probe applies (probe.output_margin). Any published variant may
answer the probe (the native rungs in a container, the in-process runner locally), and a variant that passed the
gate may still disagree with FP32 on a few samples: of the first held-out samples, the one every published
variant answers furthest inside the rule, each run alone as the probe sends it, is the probe's sample. So a
build's own variants never make its pod unready, and a corrupted file does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tritonforge import dtypes
from tritonforge.builder.data import Dataset
from tritonforge.builder.runtimes import open_runtime
from tritonforge.builder.serving_graph import variant_io
from tritonforge.builder.serving_ort import ServingOrt
from tritonforge.builder.variants import VariantOutcome
from tritonforge.server.probe import output_margin
from tritonforge.serving.batching import Batch
from tritonforge.spec import BuildSpec

CANDIDATES = 16  # held-out samples the probe's sample is chosen from
FALLBACK_TEXT = "tritonforge checks the served model with this text"  # a text model without sample_texts


@dataclass
class Candidate:
    """One held-out sample: its tensors as the probe sends them, and the model inputs it becomes."""

    request: list[dict]
    model_inputs: Batch


@dataclass
class ProbeSample:
    """The chosen sample: the request, what its answer must agree with (None: no sample every published variant
    answers within the rule; the probe then asks for an answer only), and why."""

    request: bytes
    expected: bytes | None
    index: int
    margin: float | None  # the worst margin over published variants and outputs (probe.output_margin)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "sample": self.index,
            "worst_margin": None if self.margin is None else round(self.margin, 4),
            "compares_answer": self.expected is not None,
        }


def candidates(spec: BuildSpec, validation: Dataset, texts: list[str] | None, tokenizer_file: Path | None) -> list[Candidate]:
    """The first held-out samples, one request each: texts for a tokenizer-fronted model, else tensors."""
    if spec.preprocess is not None:
        from tritonforge.builder.serving_graph import preprocess_settings
        from tritonforge.serving.tokenize import TextEncoder

        settings = preprocess_settings(spec)
        assert settings is not None and tokenizer_file is not None
        encoder = TextEncoder(tokenizer_file, settings, [t.name for t in spec.inputs])
        name = spec.preprocess.text_input
        return [
            Candidate([{"name": name, "shape": [1, 1], "datatype": "BYTES", "data": [t]}], encoder.encode([[t]])[0])
            for t in (texts or [FALLBACK_TEXT])[:CANDIDATES]
        ]
    out: list[Candidate] = []
    for batch in validation.batches:
        n = len(next(iter(batch.values())))
        for i in range(n):
            if len(out) == CANDIDATES:
                return out
            request = [
                {
                    "name": t.name,
                    "shape": [1, *(batch[t.name].shape[1:] or [1])],
                    "datatype": dtypes.by_name(t.dtype).wire,
                    "data": batch[t.name][i : i + 1].ravel().tolist(),
                }
                for t in spec.inputs
            ]
            out.append(Candidate(request, {k: v[i : i + 1] for k, v in batch.items()}))
    return out


def _values(a: np.ndarray) -> list[float]:
    """An array's values for JSON: float32 (and float16) in their shortest exact form (0.1, not 0.100000001)."""
    if a.dtype.kind == "f" and a.dtype.itemsize <= 4:
        return [float(str(v)) for v in a.astype(np.float32).ravel()]
    return [float(v) for v in a.ravel().tolist()]


def expected_outputs(spec: BuildSpec, reference: Batch) -> dict:
    """What the probe's answer must agree with: per numeric output its kind, shape, FP32 reference and thresholds."""
    kinds, gate, tol = spec.output_kinds, spec.gate, spec.validation.tolerance
    outputs = {}
    for t in spec.outputs:
        ref = np.asarray(reference[t.name])
        if ref.dtype.kind not in "fiub":
            continue  # strings: nothing to compare within a tolerance
        e: dict = {"kind": kinds[t.name], "shape": list(ref.shape), "reference": _values(ref)}
        if e["kind"] == "embedding":
            e["min_cosine"] = gate.threshold(t.name, "min_cosine")
        elif e["kind"] == "regression":
            e.update(atol=tol.atol, rtol=tol.rtol, max_mean_rel=gate.threshold(t.name, "max_mean_rel"))
        outputs[t.name] = e
    return {"model": spec.name, "outputs": outputs}


def _margin(expected: dict, answer: Batch) -> float:
    return min(
        (output_margin(e, np.asarray(answer[name], np.float64).ravel().tolist())[0] for name, e in expected["outputs"].items()),
        default=1.0,
    )


def choose(
    spec: BuildSpec, cands: list[Candidate], published: list[VariantOutcome], fp32: VariantOutcome, ort: ServingOrt | None
) -> ProbeSample:
    """The candidate every published variant answers furthest inside the probe's rule (the first on ties)."""
    notes: list[str] = []
    answers: dict[str, list[Batch]] = {}
    for o in published:
        ins = {t.name: dtypes.by_name(t.dtype).numpy for t in variant_io(spec, o)[0]}
        try:
            run = open_runtime(
                o.runtime, Path(o.file), list(ins), [t.name for t in spec.outputs], threads=spec.serving.intra_op_threads, ort=ort
            ).run
            answers[o.id] = [run({k: v.astype(ins[k]) for k, v in c.model_inputs.items()}) for c in cands]
        except Exception as e:  # it ran in the gate; should it not here, the others still choose
            if o.id == fp32.id:
                raise
            notes.append(f"the probe's sample was chosen without {o.id}, which failed to run: {type(e).__name__}: {str(e)[:200]}")
    expected = [expected_outputs(spec, a) for a in answers[fp32.id]]
    margins = [min(_margin(expected[i], runs[i]) for runs in answers.values()) for i in range(len(cands))]
    best = int(np.argmax(margins))
    request = json.dumps({"inputs": cands[best].request, "parameters": {"tritonforge_probe": True}}).encode()
    if margins[best] < 0:
        notes.append(
            f"no held-out sample of the first {len(cands)} is answered within the probe's rule by every "
            "published variant: the readiness probe checks that the public model answers, not the answer"
        )
        return ProbeSample(request, None, best, margins[best], notes)
    body = (json.dumps({**expected[best], "sample": best}, separators=(",", ":")) + "\n").encode()
    return ProbeSample(request, body, best, margins[best], notes)
