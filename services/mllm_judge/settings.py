"""Judge service settings, from `MLLM_JUDGE_*` environment variables (e.g. `MLLM_JUDGE_BACKEND=openai`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from motionnft.contracts.images import ImageLimits
from motionnft.contracts.limits import MAX_EDITS, MAX_GROUPS, MAX_PAIRS
from services.serving.settings import ServingSettings


class MllmJudgeSettings(ServingSettings):
    """Everything the judge service can be told; defaults run the weight-free stand-in on a CPU."""

    model_config = SettingsConfigDict(env_prefix="MLLM_JUDGE_", extra="ignore", frozen=True)

    port: int = Field(default=8002, ge=0, le=65535)
    backend: Literal["openai", "transformers", "similarity"] = Field(
        default="similarity", description="Who judges: an OpenAI-compatible server, a local model, or SSIM."
    )
    # openai backend
    openai_base_url: str = Field(default="http://127.0.0.1:8000/v1", description="e.g. http://vllm:8000/v1")
    openai_model: str = Field(default="Qwen/Qwen2.5-VL-32B-Instruct", description="Model name on that server.")
    openai_api_key: SecretStr | None = Field(default=None, description="Sent as a bearer token upstream.")
    # A little above the upstream's own batch slots (vLLM max-num-seqs, often 16): a queued request is
    # then always waiting there when a slot frees, so transfer and parsing never leave a slot idle.
    openai_max_concurrency: int = Field(default=24, gt=0, description="Upstream requests in flight at once.")
    openai_timeout_s: float = Field(default=60.0, gt=0, description="Per upstream attempt, seconds.")
    openai_max_attempts: int = Field(default=3, gt=0, description="Tries per question (5xx, 429, transport).")
    openai_top_logprobs: int = Field(default=20, gt=0, le=20, description="top_logprobs asked for.")
    # transformers backend
    model_path: Path | None = Field(default=None, description="Local Qwen2-VL / Qwen2.5-VL checkpoint directory.")
    device: str = Field(default="cpu", description="Torch device of the local model.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(default="float32", description="Local model dtype.")
    # every backend
    max_batch: int = Field(default=16, gt=0, description="Questions per local-model batch.")
    # Above the largest request (16 groups x 32 edits x 4 rubrics = 2048 questions) so one request fits.
    max_queue: int = Field(default=4096, gt=0, description="Questions queued before 503.")
    cache_mb: float = Field(
        default=64.0, ge=0, description="Memory for answers to identical questions, MB (0 disables)."
    )
    tie_margin: float = Field(default=0.05, ge=0, le=0.5, description="compare: |P(a) - 0.5| <= margin is a tie.")
    max_groups: int = Field(default=16, gt=0, le=MAX_GROUPS, description="Groups per score request.")
    max_edits_per_group: int = Field(default=32, gt=0, le=MAX_EDITS, description="Edits per group.")
    max_pairs: int = Field(default=64, gt=0, le=MAX_PAIRS, description="Pairs per compare request.")
    max_instruction_chars: int = Field(default=2000, gt=0, description="Longest instruction.")
    max_curate_items: int = Field(default=16, gt=0, le=MAX_GROUPS, description="Video windows per curate request.")
    describe_max_tokens: int = Field(
        default=64, gt=0, le=1024, description="curate: longest motion summary, tokens (greedy, temperature 0)."
    )
    max_image_pixels: int = Field(default=4096 * 4096, gt=0)
    min_image_side: int = Field(default=16, gt=0)
    max_image_side: int = Field(default=8192, gt=0)

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(self.max_image_pixels, self.min_image_side, self.max_image_side)
