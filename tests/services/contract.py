"""What every MotionNFT service promises at its edge, described per service so one test module
(test_contract.py) can check the reward API and the judge alike.

A `ServiceSpec` says what differs between services: the name and metrics namespace, how to build
the app with settings overrides, the main route, a valid body, where its images sit (as locations in
the body's own terms, `groups[0].edits[3]`), and the settings names of its limits. Everything else,
the bad inputs and what the answer to each must be, is written once in test_contract.py.
"""

from __future__ import annotations

import base64
import functools
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI
from PIL import Image

from motionnft.contracts.images import encode_image
from motionnft.contracts.judge import JUDGE_SCORE_PATH
from motionnft.contracts.motion import MOTION_SCORE_PATH
from tests.motionnft.flow.known_motion import gaussian_bump

SIZE = 96  # pixels per side of the valid test images


@dataclass(frozen=True)
class Scene:
    """Valid base64 PNG images: an input, its target and distinct edits."""

    source: str
    target: str
    edits: tuple[str, ...]


@functools.cache
def scene() -> Scene:
    full = gaussian_bump(amplitude=(6.0, -4.0), size=SIZE, margin=8)
    half = gaussian_bump(amplitude=(3.0, -2.0), size=SIZE, margin=8)
    opposite = gaussian_bump(amplitude=(-6.0, 4.0), size=SIZE, margin=8)
    edits = (full.target, full.source, half.target, opposite.target)
    return Scene(encode_image(full.source), encode_image(full.target), tuple(encode_image(e) for e in edits))


@dataclass(frozen=True)
class Limits:
    """Settings names (shared by both services' settings classes today, but each spec says its own)."""

    groups: str = "max_groups"
    edits: str = "max_edits_per_group"
    image_side: str = "max_image_side"


@dataclass(frozen=True)
class ServiceSpec:
    """One service, as test_contract.py sees it.

    Attributes:
        name: test id.
        namespace: prefix of its Prometheus metrics.
        create_app: settings overrides -> a fresh app (the test defaults already applied).
        path: the main route (POST).
        body: (scene, edits) -> a valid body with one group holding these edits.
        edit_loc: location of edit k, a format string with `{k}`.
        image_locs: locations of the body's other images (source first).
        groups_key: the top-level list of the body (its groups).
        limits: settings names of its limits.
        problem_statuses: every error status the main route declares as problem+json.
        metrics: service-specific metric lines present after one scored request.
    """

    name: str
    namespace: str
    create_app: Callable[..., FastAPI]
    path: str
    body: Callable[[Scene, list[str]], dict[str, Any]]
    edit_loc: str = "groups[0].edits[{k}]"
    image_locs: tuple[str, ...] = ("groups[0].source", "groups[0].target")
    groups_key: str = "groups"
    limits: Limits = Limits()
    problem_statuses: tuple[int, ...] = (400, 401, 413, 422, 429, 503)
    metrics: tuple[str, ...] = ()

    @property
    def source_loc(self) -> str:
        return self.image_locs[0]

    @property
    def edits_loc(self) -> str:
        return self.edit_loc.rsplit("[", 1)[0]

    def valid_body(self, edits: list[str] | None = None) -> dict[str, Any]:
        s = scene()
        return self.body(s, list(edits) if edits is not None else list(s.edits[:2]))


def reward_app(**overrides: Any) -> FastAPI:
    from services.reward_api.app import create_app
    from services.reward_api.settings import RewardApiSettings

    return create_app(RewardApiSettings(**{"max_wait_ms": 1.0, "flow_threads": 1, **overrides}))


def judge_app(**overrides: Any) -> FastAPI:
    from services.mllm_judge.app import create_app
    from services.mllm_judge.settings import MllmJudgeSettings

    return create_app(MllmJudgeSettings(**{"backend": "similarity", **overrides}))


REWARD_API = ServiceSpec(
    name="reward_api",
    namespace="reward_api",
    create_app=reward_app,
    path=MOTION_SCORE_PATH,
    body=lambda s, edits: {"groups": [{"source": s.source, "target": s.target, "edits": edits}]},
    metrics=("reward_api_target_flow_cache_misses_total 1.0", "reward_api_flow_batch_seconds_count"),
)
MLLM_JUDGE = ServiceSpec(
    name="mllm_judge",
    namespace="mllm_judge",
    create_app=judge_app,
    path=JUDGE_SCORE_PATH,
    body=lambda s, edits: {
        "groups": [{"instruction": "Raise the left arm", "source": s.source, "target": s.target, "edits": edits}],
        "rubrics": ["edit"],
    },
    problem_statuses=(400, 401, 413, 422, 429, 502, 503),
    metrics=("mllm_judge_questions_total 2.0", "mllm_judge_answer_cache_hits_total 0.0"),
)
SPECS = (REWARD_API, MLLM_JUDGE)


# Locations in the body's own terms, as the services name them in problem bodies.

_PART = re.compile(r"([A-Za-z_]\w*)|\[(\d+)\]|\.")


def _path(loc: str) -> list[str | int]:
    parts: list[str | int] = []
    for name, index in _PART.findall(loc):
        if name:
            parts.append(name)
        elif index:
            parts.append(int(index))
    return parts


def set_at(body: dict[str, Any], loc: str, value: Any) -> None:
    """Put `value` at `loc` (e.g. `groups[0].edits[3]`), which must exist up to its last part."""
    *parents, last = _path(loc)
    node: Any = body
    for part in parents:
        node = node[part]
    node[last] = value


def get_at(body: dict[str, Any], loc: str) -> Any:
    node: Any = body
    for part in _path(loc):
        node = node[part]
    return node


# Bad images, each in one way.

BAD_IMAGES = ("invalid-base64", "not-an-image", "truncated-png", "bomb", "too-small", "gif", "empty")


def _encoded(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@functools.cache
def bad_image(kind: str) -> str:
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    if kind == "invalid-base64":
        return "not base64 at all!"
    if kind == "not-an-image":
        return _b64(b"hello, this is text and not an image" * 4)
    if kind == "truncated-png":
        return _b64(_encoded(image)[:-200])
    if kind == "bomb":  # 6000x6000 zeros: ~100 KB of PNG, 36 M pixels once decoded
        return _b64(_encoded(np.zeros((6000, 6000), dtype=np.uint8)))
    if kind == "too-small":
        return _b64(_encoded(image[:8, :8]))
    if kind == "gif":
        return _b64(_encoded(image, "GIF"))
    if kind == "empty":
        return ""
    raise ValueError(kind)
