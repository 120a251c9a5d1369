"""Ray rollout actors and what they drive: policies (diffusers pipelines + LoRA), sampling, reward calls."""
