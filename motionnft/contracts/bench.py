"""The MotionEdit-Bench results file (`OUT/results.json` of `motionnft bench score`), a stable schema.

Field names here are the public contract: add fields, never rename these. Scales follow the paper
(docs/method.md section 6): the generative metrics (fidelity, preservation, coherence and their mean,
overall) on 0-5, MAS on 0-100, Win Rate in percent. An item that has no output, or whose score could
not be had, is counted (`missing`, `failed`) and left out of every mean: it never becomes a 0.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RESULTS_SCHEMA_VERSION = 1
METRICS = ("overall", "fidelity", "preservation", "coherence", "mas", "win_rate")
"""Every metric a model is summarised by, in the report's column order."""
RUBRIC_METRICS = ("fidelity", "preservation", "coherence")
"""The judge's rubrics behind the generative metrics; overall is their mean."""

Metric = Literal["overall", "fidelity", "preservation", "coherence", "mas", "win_rate"]
WinRateMode = Literal["scores", "judge"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CategorySummary(_Model):
    """One category's size and means (None where no item of it was scored on that metric)."""

    n: int = Field(description="Items of this category whose output was scored.")
    overall: float | None = None
    fidelity: float | None = None
    preservation: float | None = None
    coherence: float | None = None
    mas: float | None = None
    win_rate: float | None = None


class ModelSummary(_Model):
    """One model over the whole bench."""

    n: int = Field(description="Items whose output was scored on every metric.")
    missing: int = Field(description="Bench items with no output file.")
    failed: int = Field(description="Items whose output could not be scored (see `items[].error`).")
    overall: float | None = Field(description="Mean Overall, 0-5 (mean of the three rubrics).")
    fidelity: float | None = Field(description="Mean Fidelity, 0-5.")
    preservation: float | None = Field(description="Mean Preservation, 0-5.")
    coherence: float | None = Field(description="Mean Coherence, 0-5.")
    mas: float | None = Field(description="Mean Motion Alignment Score, 0-100.")
    win_rate: float | None = Field(description="Win Rate in percent against every other model (ties count 1/2).")
    ci95: dict[str, tuple[float, float]] = Field(description="Metric -> bootstrap 95% interval of the mean.")
    per_category: dict[str, CategorySummary] = Field(description="Category -> its means.")


class ItemScores(_Model):
    """One model's output on one bench item: its scores, or why there are none."""

    item: str = Field(description="Bench item id.")
    model: str
    category: str | None = None
    status: Literal["scored", "missing", "failed"]
    error: str | None = Field(default=None, description="Why a failed item has no score.")
    overall: float | None = None
    fidelity: float | None = None
    preservation: float | None = None
    coherence: float | None = None
    mas: float | None = None
    motion_reward: float | None = Field(default=None, description="The training reward of this edit, 0-1.")
    win_rate: float | None = Field(default=None, description="Percent of this item's comparisons won.")


class Versions(_Model):
    """What produced the numbers: results from different versions are not comparable."""

    flow_backend: str
    reward_version: str
    judge_backend: str
    judge_model: str
    judge_is_language_model: bool
    rubrics: dict[str, str] = Field(description="Rubric name -> version (compare too when Win Rate used it).")
    win_rate: WinRateMode


class BenchResults(_Model):
    """`OUT/results.json`: per-model summaries, paired differences, and every item's scores."""

    schema_version: int = RESULTS_SCHEMA_VERSION
    bench: str = Field(description="The bench file or folder scored.")
    items_total: int = Field(description="Items in the bench.")
    models: dict[str, ModelSummary]
    pairs: dict[str, dict[str, tuple[float, float]]] = Field(
        description='"A|B" -> metric -> paired bootstrap 95% interval of mean(A - B) over items both scored.'
    )
    items: list[ItemScores]
    versions: Versions
