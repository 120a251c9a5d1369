"""Judge backends: `openai` (any OpenAI-compatible server), `transformers` (a local Qwen2-VL class
checkpoint) and `similarity` (weight-free SSIM stand-in, not a language model)."""
