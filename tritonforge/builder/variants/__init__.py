"""The variant stages of a build, by job: conversion, the gate, the INT8 search's strategies, timing and the
choice of the primary; `VariantBuilder` runs them in order over one `BuildContext`."""

from tritonforge.builder.variants.builder import VariantBuilder
from tritonforge.builder.variants.context import BuildContext, Reporter, ServedData, conversion_code, stage_key
from tritonforge.builder.variants.gating import check_variant
from tritonforge.builder.variants.outcome import FP32, SEARCH_WINNER_ID, VariantOutcome, VariantsResult
from tritonforge.builder.variants.primary import PRIMARY_MARGIN, PublishOrder, choose_primary, publish_order
from tritonforge.builder.variants.timing import subnormal_speedup_notes

__all__ = [
    "FP32",
    "PRIMARY_MARGIN",
    "SEARCH_WINNER_ID",
    "BuildContext",
    "PublishOrder",
    "Reporter",
    "ServedData",
    "VariantBuilder",
    "VariantOutcome",
    "VariantsResult",
    "check_variant",
    "choose_primary",
    "conversion_code",
    "publish_order",
    "stage_key",
    "subnormal_speedup_notes",
]
