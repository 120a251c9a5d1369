"""MotionEdit data: records and preprocessing, the jsonl and parquet formats, validation, and a
synthetic MotionEdit-style generator with exact optical flow.

Images are uint8 RGB ``(H, W, 3)``; flows float32 ``(2, H, W)`` in pixels, input -> target.
"""

from __future__ import annotations

from motionnft.data.formats import DatasetFormatError, load_dataset, load_jsonl, load_parquet
from motionnft.data.records import AS_IS, EditRecord, EditSample, Preprocess, RecordError
from motionnft.data.synth import CATEGORIES, SynthPair, generate
from motionnft.data.synth_io import load_true_flow, split, write_dataset
from motionnft.data.validation import RecordProblem, ValidationError, require_valid, validate

__all__ = [
    "AS_IS",
    "CATEGORIES",
    "DatasetFormatError",
    "EditRecord",
    "EditSample",
    "Preprocess",
    "RecordError",
    "RecordProblem",
    "SynthPair",
    "ValidationError",
    "generate",
    "load_dataset",
    "load_jsonl",
    "load_parquet",
    "load_true_flow",
    "require_valid",
    "split",
    "validate",
    "write_dataset",
]
