"""The one place a judge backend is chosen: by `MLLM_JUDGE_BACKEND`, imported only when chosen (the
transformers backend pulls in torch; the others never need it)."""

from __future__ import annotations

from services.mllm_judge.backends.base import JudgeBackend
from services.mllm_judge.settings import MllmJudgeSettings


def build_backend(settings: MllmJudgeSettings) -> JudgeBackend:
    """The backend the settings ask for (not loaded yet)."""
    if settings.backend == "openai":
        from services.mllm_judge.backends.openai_backend import OpenAIJudge

        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        return OpenAIJudge(
            settings.openai_base_url, settings.openai_model, api_key=key,
            max_concurrency=settings.openai_max_concurrency, timeout_s=settings.openai_timeout_s,
            max_attempts=settings.openai_max_attempts, top_logprobs=settings.openai_top_logprobs,
        )  # fmt: skip
    if settings.backend == "transformers":
        from services.mllm_judge.backends.transformers_backend import TransformersJudge

        if settings.model_path is None:
            raise ValueError("MLLM_JUDGE_MODEL_PATH must name a local checkpoint for the transformers backend")
        return TransformersJudge(
            settings.model_path, device=settings.device, dtype=settings.dtype,
            max_batch=settings.max_batch, max_queue=settings.max_queue,
        )  # fmt: skip
    from services.mllm_judge.backends.similarity import SimilarityJudge

    return SimilarityJudge()
