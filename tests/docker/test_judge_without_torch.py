"""The slim judge image has no torch: the judge must import, build and warm up without it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.docker.dockerfiles import ROOT

# Runs in a fresh interpreter: a meta-path finder refuses torch (and what would pull CUDA in) before
# anything is imported, as if the packages were not installed, which is the slim image's case.
SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, os, sys

    BLOCKED = {"torch", "torchvision", "transformers", "triton"}

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked: the slim judge image)")
            return None

    sys.meta_path.insert(0, NoTorch())
    os.environ.pop("MLLM_JUDGE_BACKEND", None)

    from fastapi.testclient import TestClient
    from services.mllm_judge.app import create_app
    from services.mllm_judge.settings import MllmJudgeSettings

    result = {}
    openai_app = create_app(MllmJudgeSettings(backend="openai", openai_base_url="http://127.0.0.1:9/v1"))
    result["openai_routes"] = sorted(r.path for r in openai_app.routes)
    with TestClient(create_app(MllmJudgeSettings(backend="similarity"))) as client:
        result["similarity_readyz"] = client.get("/readyz").status_code
        result["similarity_healthz"] = client.get("/healthz").status_code
    result["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps(result))
    """
)


def test_judge_runs_with_torch_blocked() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []
    assert {"/healthz", "/readyz", "/metrics", "/v1/judge/score"} <= set(result["openai_routes"])
    assert result["similarity_readyz"] == 200 and result["similarity_healthz"] == 200
