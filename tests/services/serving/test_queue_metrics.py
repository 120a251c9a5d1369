"""The gauges behind the "near full" alerts: queue level and limits, at scrape time."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from fastapi.testclient import TestClient

from services.mllm_judge.app import create_app as judge_app
from services.mllm_judge.settings import MllmJudgeSettings
from services.reward_api.app import create_app as reward_app
from services.reward_api.settings import RewardApiSettings
from services.serving.batching import MicroBatcher
from services.serving.metrics import ServiceMetrics

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(5)]


def _value(metrics: ServiceMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None, name
    return value


async def test_queued_items_follow_the_batcher_queue() -> None:
    metrics = ServiceMetrics("svc")
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    def process(items: Sequence[int]) -> list[int]:
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(5)
        return list(items)

    batcher: MicroBatcher[int, int] = MicroBatcher(
        process, max_batch_cost=1, max_wait_s=0, max_queue_cost=10, metrics=metrics
    )
    batcher.start()
    assert _value(metrics, "svc_queue_limit_items") == 10
    tasks = [asyncio.create_task(batcher.submit(i)) for i in range(4)]
    for _ in range(100):  # one item in the model call, three waiting
        await asyncio.sleep(0.01)
        if _value(metrics, "svc_queued_items") == 3:
            break
    assert _value(metrics, "svc_queued_items") == 3
    release.set()
    assert await asyncio.gather(*tasks) == [0, 1, 2, 3]
    assert _value(metrics, "svc_queued_items") == 0
    await batcher.stop()


def test_services_export_their_limits_before_loading() -> None:
    reward = TestClient(reward_app(RewardApiSettings(max_in_flight=7, max_queue=99))).get("/metrics").text
    assert "reward_api_in_flight_limit 7.0" in reward
    assert "reward_api_queue_limit_items 99.0" in reward
    assert "reward_api_queued_items 0.0" in reward
    judge = TestClient(judge_app(MllmJudgeSettings(max_in_flight=5))).get("/metrics").text
    assert "mllm_judge_in_flight_limit 5.0" in judge
    assert "mllm_judge_queue_limit_items 0.0" in judge  # the openai/similarity backends queue upstream
