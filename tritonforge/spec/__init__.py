"""The build spec: one YAML file per model, validated with errors that name the file and the field.

Imports only dtypes and errors from tritonforge. Sections whose `kind` picks an implementation (the source's
loader and exporter, a variant's converter) validate against registries the builder fills on import
(`tritonforge.spec.registry`).
"""

from tritonforge.spec.model import (
    PYTHON_CACHE_KINDS,
    BuildSpec,
    CacheSpec,
    DataSpec,
    DynamicBatchingSpec,
    GateSpec,
    Int8SearchSpec,
    OutputGateSpec,
    RouterSpec,
    SourceSpec,
    TensorSpec,
    TimingSpec,
    VariantSpec,
    WarmupSpec,
    load_spec,
    parse_spec,
)
from tritonforge.spec.refs import CALLABLE_REF

__all__ = [
    "CALLABLE_REF",
    "PYTHON_CACHE_KINDS",
    "BuildSpec",
    "CacheSpec",
    "DataSpec",
    "DynamicBatchingSpec",
    "GateSpec",
    "Int8SearchSpec",
    "OutputGateSpec",
    "RouterSpec",
    "SourceSpec",
    "TensorSpec",
    "TimingSpec",
    "VariantSpec",
    "WarmupSpec",
    "load_spec",
    "parse_spec",
]
