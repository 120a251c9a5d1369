"""`python -m services.reward_api`: serve the motion reward API (settings from REWARD_API_* variables)."""

from __future__ import annotations

from services.reward_api.app import create_app
from services.reward_api.settings import RewardApiSettings
from services.serving.runner import load_settings, run_service


def main() -> None:
    settings = load_settings(RewardApiSettings, "reward API")
    app = create_app(settings)
    print(f"MotionNFT reward API on http://{settings.host}:{settings.port}  (OpenAPI: http://{settings.host}:{settings.port}/docs)",
          flush=True)  # fmt: skip
    run_service(app, settings, app.state.readiness)


if __name__ == "__main__":
    main()
