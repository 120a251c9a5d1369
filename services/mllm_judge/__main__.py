"""`python -m services.mllm_judge`: serve the MLLM judge (settings from MLLM_JUDGE_* variables)."""

from __future__ import annotations

from services.mllm_judge.app import create_app
from services.mllm_judge.settings import MllmJudgeSettings
from services.serving.runner import load_settings, run_service


def main() -> None:
    settings = load_settings(MllmJudgeSettings, "MLLM judge")
    app = create_app(settings)
    url = f"http://{settings.host}:{settings.port}"
    print(f"MotionNFT MLLM judge ({settings.backend} backend) on {url}  (OpenAPI: {url}/docs)", flush=True)
    run_service(app, settings, app.state.readiness)


if __name__ == "__main__":
    main()
