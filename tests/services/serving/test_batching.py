"""MicroBatcher with a plain python `process` (no model): coalescing, cost limits, latency, failures,
load shedding, shutdown and cancellation. Every test runs in well under half a second."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from services.serving.batching import MicroBatcher, Overloaded
from services.serving.metrics import ServiceMetrics

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(5)]


class Recorder:
    """A `process` that doubles ints, records every batch, and can be held inside a call by a gate."""

    def __init__(self, result: Callable[[int], int | Exception] = lambda x: 2 * x) -> None:
        self.result = result
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()  # open unless a test closes it

    def __call__(self, items: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        self.entered.set()
        assert self.gate.wait(5), "test never opened the gate"
        return [self.result(x) for x in items]

    async def wait_entered(self) -> None:
        """Until the worker is inside a `process` call (it runs on the batcher's thread)."""
        for _ in range(500):
            if self.entered.is_set():
                return
            await asyncio.sleep(0.002)
        raise TimeoutError("process was never called")

    @property
    def sizes(self) -> list[int]:
        return [len(b) for b in self.batches]


@asynccontextmanager
async def running(process: Callable[[Sequence[int]], Sequence[Any]], **options: Any) -> AsyncIterator[MicroBatcher]:
    options = {"max_batch_cost": 100, "max_wait_s": 0.02, "max_queue_cost": 1000, **options}
    batcher: MicroBatcher[int, int] = MicroBatcher(process, name="test-batcher", **options)
    batcher.start()
    try:
        yield batcher
    finally:
        if isinstance(process, Recorder):
            process.gate.set()
        await asyncio.wait_for(batcher.stop(), 2)


async def settle(tasks: Sequence[asyncio.Task]) -> None:
    """Let freshly created tasks run up to their first await (i.e. queue their items)."""
    for _ in range(5):
        await asyncio.sleep(0)
    assert not any(t.done() and t.exception() for t in tasks if not t.cancelled())


async def test_concurrent_submits_coalesce_into_one_call() -> None:
    process = Recorder()
    metrics = ServiceMetrics("test")
    async with running(process, max_wait_s=0.05, metrics=metrics) as batcher:
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
    assert results == [2 * i for i in range(10)]  # each caller gets its own result, in order
    assert process.batches == [list(range(10))]
    assert metrics.registry.get_sample_value("test_batch_requests_count") == 1
    assert metrics.registry.get_sample_value("test_batch_items_sum") == 10
    assert batcher.queued_cost == 0


async def test_batch_cost_limit_is_respected() -> None:
    process = Recorder()
    async with running(process, max_batch_cost=7, cost=lambda x: x) as batcher:
        results = await asyncio.gather(*(batcher.submit(3) for _ in range(5)), batcher.submit(10))
    assert results == [6] * 5 + [20]
    # Cost 3 items pair up (6 <= 7); the cost 10 item is over the limit and so runs alone.
    assert sorted(process.sizes) == [1, 1, 2, 2], process.batches
    for batch in process.batches:
        assert sum(batch) <= 7 or len(batch) == 1, process.batches


async def test_max_wait_bounds_the_latency_of_a_lone_item() -> None:
    async with running(Recorder(), max_wait_s=0.05) as batcher:
        started = time.perf_counter()
        assert await batcher.submit(1) == 2
        waited = time.perf_counter() - started
    assert 0.04 <= waited < 0.5, waited


async def test_a_full_batch_does_not_wait() -> None:
    async with running(Recorder(), max_wait_s=5.0, max_batch_cost=3) as batcher:
        started = time.perf_counter()
        assert await asyncio.gather(*(batcher.submit(i) for i in range(3))) == [0, 2, 4]
        assert time.perf_counter() - started < 1.0  # far below max_wait_s


async def test_an_exception_result_fails_only_its_item() -> None:
    process = Recorder(lambda x: ValueError(f"bad item {x}") if x == 2 else 2 * x)
    async with running(process) as batcher:
        results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert results[:2] == [0, 2] and results[3] == 6
    assert isinstance(results[2], ValueError) and "bad item 2" in str(results[2])
    assert process.sizes == [4]


async def test_process_raising_fails_the_batch_and_the_batcher_keeps_working() -> None:
    calls = 0

    def process(items: Sequence[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("model crashed")
        return [2 * x for x in items]

    async with running(process) as batcher:
        failed = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) and "model crashed" in str(r) for r in failed), failed
        assert await asyncio.gather(*(batcher.submit(i) for i in range(3))) == [0, 2, 4]


async def test_wrong_number_of_results_fails_the_batch() -> None:
    async with running(lambda items: [1]) as batcher:
        results = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "1 results for 2 items" in str(r) for r in results), results


async def test_overloaded_past_max_queue_cost() -> None:
    process = Recorder()
    process.gate.clear()
    async with running(process, max_queue_cost=3, max_batch_cost=1) as batcher:
        busy = asyncio.create_task(batcher.submit(0))
        await process.wait_entered()  # the worker holds item 0; the queue is empty again
        queued = [asyncio.create_task(batcher.submit(i)) for i in (1, 2, 3)]
        await settle(queued)
        assert batcher.queued_cost == 3
        with pytest.raises(Overloaded, match="queue is full"):
            await batcher.submit(4)
        process.gate.set()
        assert await busy == 0
        assert await asyncio.gather(*queued) == [2, 4, 6]
        assert await batcher.submit(5) == 10  # room again once the queue drained


async def test_oversize_item_is_admitted_into_an_empty_queue_only() -> None:
    process = Recorder()
    process.gate.clear()
    async with running(process, max_queue_cost=3, max_batch_cost=1, cost=lambda x: x) as batcher:
        busy = asyncio.create_task(batcher.submit(1))
        await process.wait_entered()
        big = asyncio.create_task(batcher.submit(10))  # queue empty: admitted although 10 > 3
        await settle([big])
        assert batcher.queued_cost == 10
        with pytest.raises(Overloaded):
            await batcher.submit(1)  # queue not empty and over the limit
        process.gate.set()
        assert (await busy, await big) == (2, 20)


async def test_stop_finishes_queued_work_then_refuses() -> None:
    process = Recorder()
    batcher: MicroBatcher[int, int] = MicroBatcher(
        process, max_batch_cost=2, max_wait_s=5.0, max_queue_cost=100, name="test-batcher"
    )
    batcher.start()
    tasks = [asyncio.create_task(batcher.submit(i)) for i in range(5)]
    await settle(tasks)
    started = time.perf_counter()
    await batcher.stop()  # must not sit out max_wait_s with a part-filled batch
    assert time.perf_counter() - started < 1.0
    assert [t.result() for t in tasks] == [0, 2, 4, 6, 8]
    assert sum(process.sizes) == 5
    with pytest.raises(Overloaded, match="shutting down"):
        await batcher.submit(1)


async def test_cancelled_waiters_do_not_break_the_worker() -> None:
    process = Recorder()
    process.gate.clear()
    async with running(process, max_batch_cost=1) as batcher:
        running_item = asyncio.create_task(batcher.submit(1))
        await process.wait_entered()
        queued_item = asyncio.create_task(batcher.submit(2))
        kept = asyncio.create_task(batcher.submit(3))
        await settle([queued_item, kept])
        running_item.cancel()  # its item is inside process right now
        queued_item.cancel()  # its item is still waiting in the queue
        await asyncio.sleep(0)
        process.gate.set()
        assert await asyncio.wait_for(kept, 2) == 6
        assert running_item.cancelled() and queued_item.cancelled()
        assert await asyncio.wait_for(batcher.submit(4), 2) == 8  # the worker is alive
        assert batcher.queued_cost == 0
