"""Micro-batching: coalesce work from concurrent requests into one model call.

One worker task takes the first waiting item, keeps collecting until the batch's cost reaches
`max_batch_cost` or `max_wait_s` has passed since that first item, then runs `process` on a single
worker thread (a model is not re-entrant, and the event loop must stay free). While a batch runs,
new items queue up, so under load batches fill without waiting. The queue is bounded by cost:
past `max_queue_cost` a submit raises `Overloaded` (the service answers 503 with Retry-After)
instead of letting memory grow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from services.serving.metrics import ServiceMetrics

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


class Overloaded(Exception):
    """The batch queue is full; the caller should retry later."""


@dataclass
class _Pending(Generic[T, R]):
    item: T
    cost: int
    future: asyncio.Future[R]


class MicroBatcher(Generic[T, R]):
    """Batches `submit`ted items into calls of `process(items) -> results` (same order, same length).

    `process` may return an Exception in place of a result: that item alone fails with it.
    If `process` raises, every item of that batch fails with the exception.
    """

    def __init__(
        self,
        process: Callable[[Sequence[T]], Sequence[R | Exception]],
        *,
        max_batch_cost: int,
        max_wait_s: float,
        max_queue_cost: int,
        cost: Callable[[T], int] = lambda _: 1,
        metrics: ServiceMetrics | None = None,
        name: str = "batcher",
    ) -> None:
        self.process = process
        self.max_batch_cost = max_batch_cost
        self.max_wait_s = max_wait_s
        self.max_queue_cost = max_queue_cost
        self.cost = cost
        self.metrics = metrics
        self.name = name
        self._queue: deque[_Pending[T, R]] = deque()
        self._queued_cost = 0
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        if metrics is not None:
            # Read at scrape time: the queue level never needs updating on the hot path.
            metrics.queued_items.set_function(lambda: self._queued_cost)
            metrics.queue_limit_items.set(max_queue_cost)

    @property
    def queued_cost(self) -> int:
        return self._queued_cost

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Finish everything already queued, then stop the worker."""
        self._closing = True
        self._wakeup.set()
        if self._worker is not None:
            await self._worker
            self._worker = None
        self._executor.shutdown(wait=True)

    async def submit(self, item: T) -> R:
        """Queue one item and wait for its result; raises Overloaded when the queue is full."""
        if self._closing:
            raise Overloaded(f"{self.name} is shutting down")
        cost = max(1, self.cost(item))
        # A single item larger than the limit is still admitted into an empty queue.
        if self._queue and self._queued_cost + cost > self.max_queue_cost:
            raise Overloaded(f"{self.name} queue is full ({self._queued_cost} queued)")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(item, cost, future))
        self._queued_cost += cost
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = await self._collect()
            await self._execute(batch)

    async def _collect(self) -> list[_Pending[T, R]]:
        deadline = time.monotonic() + self.max_wait_s
        while sum(p.cost for p in self._queue) < self.max_batch_cost and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        batch: list[_Pending[T, R]] = []
        cost = 0
        while self._queue and (not batch or cost + self._queue[0].cost <= self.max_batch_cost):
            pending = self._queue.popleft()
            cost += pending.cost
            batch.append(pending)
        self._queued_cost -= cost
        return batch

    async def _execute(self, batch: list[_Pending[T, R]]) -> None:
        if self.metrics is not None:
            self.metrics.batch_items.observe(sum(p.cost for p in batch))
            self.metrics.batch_requests.observe(len(batch))
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self.process, [p.item for p in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{self.name}: process returned {len(results)} results for {len(batch)} items")
        except Exception as exc:
            log.exception("%s: batch of %d failed", self.name, len(batch))
            results = [exc] * len(batch)
        for pending, result in zip(batch, results, strict=True):
            if pending.future.done():  # the request was cancelled (client went away)
                continue
            if isinstance(result, Exception):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)
