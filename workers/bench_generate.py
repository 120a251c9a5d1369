"""`motionnft bench generate`: one edit per MotionEdit-Bench item, a fixed seed per item, resumable.

The driver reads the bench, skips the items whose PNG is already in the output folder, loads each
remaining input (centre crop to square, resized to S x S, as training data is), and deals the items
out in small chunks to the renderers; it writes every PNG they return (`workers.bench_output`).

Renderers are Ray actors that load the model once (`workers.bench_render.Renderer`): one per GPU
of the Ray cluster (`num_gpus=1`), or one CPU actor where the cluster has no GPU. Each keeps two
chunks queued and gets the next as it returns one, so a fast actor takes more. `use_ray=False`
renders in this process instead (one device; what the tests use to stay fast).

An item that cannot be loaded or rendered is a `Failure` (written to failures.jsonl) and the run
goes on; a renderer that cannot load its model, or the loss of every renderer, stops the run
(`RendererError`).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from motionnft.bench.items import file_name_problem
from motionnft.data.records import EditRecord, RecordError, center_square, read_image, resize
from motionnft.progress import StepProgress
from workers.bench_output import BenchOutput, Failure
from workers.bench_render import Renderer, RendererError
from workers.bench_tasks import RenderItem, RenderResult, RenderSource, describe, item_seed

CHUNK = 4  # items per actor call: small, so the last chunks spread over the actors
QUEUED_PER_ACTOR = 2  # chunks each actor holds: the next is queued while it renders one


class BenchReadError(ValueError):
    """The bench cannot be rendered: it has no items, or an id repeats or cannot name a file."""


@dataclass
class GenerateSummary:
    """One run: `total` items asked for, `kept` already rendered, `rendered` now, `failed` this run."""

    folder: Path
    total: int
    kept: int = 0
    rendered: int = 0
    failed: list[Failure] = field(default_factory=list)


def check_ids(records: list[EditRecord]) -> None:
    """The bench has items, and their ids can name the output files: unique, plain file names.

    Raises:
        BenchReadError: no items, or naming the first id that repeats or is not a plain file name.
    """
    if not records:
        raise BenchReadError("the bench has no items")
    seen: set[str] = set()
    for record in records:
        name = record.id
        problem = file_name_problem(name)
        if problem:
            raise BenchReadError(f"{record.origin}: {problem}")
        if name in seen:
            raise BenchReadError(f"{record.origin}: item id {name!r} repeats; ids name the output files")
        seen.add(name)


def load_input(record: EditRecord, size: int, seed: int) -> RenderItem:
    """The record's input, centre-cropped to square and resized to uint8 (S, S, 3), with the item's seed.

    Raises:
        RecordError: the input image cannot be read or decoded (the message names the record).
    """
    image = read_image(record.input_ref, what=f"record {record.id!r} input image")
    return RenderItem(record.id, record.prompt, resize(center_square(image), size, size), item_seed(seed, record.id))


def generate_bench(
    records: list[EditRecord],
    source: RenderSource,
    folder: Path,
    *,
    seed: int = 0,
    limit: int | None = None,
    use_ray: bool = True,
    progress: bool = True,
) -> GenerateSummary:
    """Render the first `limit` (default all) of `records` into `folder` (`DIR/NAME`); see the module docstring.

    Raises:
        BenchReadError: no items, or an item id repeats or cannot name a file.
        OutputError: `folder` was rendered with other settings.
        RendererError: the renderers could not load the model (no item is failed for it), or all died.
    """
    items = records[:limit] if limit else records
    check_ids(items)
    output = BenchOutput(folder)
    output.claim(source, seed)
    todo = [r for r in items if not output.has(r.id)]
    summary = GenerateSummary(folder, total=len(items), kept=len(items) - len(todo))
    earlier = output.failures()
    with StepProgress("render", total=len(todo), enabled=progress) as bar:
        tally = _Tally(output, summary, bar)
        try:
            renderers = RayRenderers(source, len(todo)) if use_ray else LocalRenderers(source)
            for results in renderers.render(_chunks(todo, source.size, seed, on_failure=tally.add)):
                for result in results:
                    tally.add(result)
        finally:  # also after Ctrl-C or a lost renderer: earlier failures not retried yet still fail
            still = [f for item, f in earlier.items() if item not in tally.seen and not output.has(item)]
            output.write_failures(still + summary.failed)
    return summary


class _Tally:
    """Takes each result as it comes: writes its PNG or records its failure, and moves the progress on."""

    def __init__(self, output: BenchOutput, summary: GenerateSummary, bar: StepProgress) -> None:
        self.output, self.summary, self.bar = output, summary, bar
        self.seen: set[str] = set()  # items with a result in this run
        self.started = time.monotonic()

    def add(self, result: RenderResult) -> None:
        summary = self.summary
        self.seen.add(result.id)
        if result.png is not None:
            self.output.write_png(result.id, result.png)
            summary.rendered += 1
        else:
            summary.failed.append(Failure.now(result.id, result.error or "no image"))
        per_s = len(self.seen) / max(time.monotonic() - self.started, 1e-9)  # model loading included
        self.bar.advance({"rendered": summary.rendered, "failed": len(summary.failed), "items_per_s": per_s})


def _chunks(
    records: list[EditRecord], size: int, seed: int, on_failure: Callable[[RenderResult], None]
) -> Iterator[list[RenderItem]]:
    """Chunks of up to `CHUNK` loaded items, loaded only as they are asked for (a bench of thousands
    never sits in memory at once); an input that cannot be read goes to `on_failure` instead."""
    chunk: list[RenderItem] = []
    for record in records:
        try:
            chunk.append(load_input(record, size, seed))
        except RecordError as exc:
            on_failure(RenderResult(record.id, None, str(exc)))
            continue
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def renderer_plan(gpus: int, items: int) -> tuple[int, dict[str, Any], str]:
    """(actors, their `ray.remote` options, their device) for a cluster of `gpus` GPUs and `items` to
    render: one actor per GPU, no more than there are chunks to deal; one CPU actor with no GPU."""
    if gpus <= 0:
        return 1, {"num_cpus": 1, "num_gpus": 0}, "cpu"
    return max(1, min(gpus, math.ceil(items / CHUNK))), {"num_cpus": 1, "num_gpus": 1}, "cuda"


class LocalRenderers:
    """One renderer in this process, loaded at the first chunk (on the GPU if there is one)."""

    def __init__(self, source: RenderSource) -> None:
        self.source = source

    def render(self, chunks: Iterable[list[RenderItem]]) -> Iterator[list[RenderResult]]:
        renderer: Renderer | None = None
        for chunk in chunks:
            if renderer is None:
                renderer = Renderer(self.source, "cuda" if torch.cuda.is_available() else "cpu")
            yield renderer.render(chunk)


class RayRenderers:
    """Renderer actors on Ray: one per GPU of the cluster (at most one per chunk), or one CPU actor."""

    def __init__(self, source: RenderSource, items: int) -> None:
        self.source, self.items = source, items

    def render(self, chunks: Iterable[list[RenderItem]]) -> Iterator[list[RenderResult]]:
        """Results chunk by chunk as the actors finish them; actors start at the first chunk (none if
        every input failed to load) and are stopped at the end."""
        from workers.local_ray import ray_session

        queue = iter(chunks)
        first = next(queue, None)
        if first is None:
            return
        with ray_session():
            actors = self._start()
            try:
                yield from _deal(actors, _prepend(first, queue))
            finally:
                for actor in actors:
                    _kill(actor)

    def _start(self) -> list[Any]:
        """The actors, each with its model loaded; raises `RendererError` if they cannot load it."""
        import ray
        from ray.exceptions import RayActorError

        count, options, device = renderer_plan(int(ray.cluster_resources().get("GPU", 0)), self.items)
        actor: Any = ray.remote(**options)(Renderer)
        shared = ray.put(self.source)  # the EMA weights travel to the store once, not once per actor
        actors = [actor.remote(shared, device) for _ in range(count)]
        try:
            ray.get([a.ready.remote() for a in actors])
        except RayActorError as exc:
            for a in actors:
                _kill(a)
            raise RendererError(_creation_error(exc)) from exc
        return actors


def _deal(actors: list[Any], chunks: Iterator[list[RenderItem]]) -> Iterator[list[RenderResult]]:
    """Keep `QUEUED_PER_ACTOR` chunks on every live actor; results as each chunk comes back. A chunk
    whose actor died becomes failures of its items; the run stops once no actor lives."""
    import ray
    from ray.exceptions import RayActorError

    pending: dict[Any, tuple[Any, list[str]]] = {}  # result ref -> (its actor, its item ids)
    live = list(actors)

    def send(actor: Any) -> None:
        chunk = next(chunks, None)
        if chunk is not None:
            pending[actor.render.remote(chunk)] = (actor, [item.id for item in chunk])

    for actor in live:
        for _ in range(QUEUED_PER_ACTOR):
            send(actor)
    while pending:
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        actor, ids = pending.pop(ref)
        try:
            results = ray.get(ref)
        except RayActorError as exc:
            if actor in live:
                live.remove(actor)
            yield [RenderResult(item, None, f"the renderer died: {describe(exc)}") for item in ids]
            if not live and next(chunks, None) is not None:
                raise RendererError(f"every renderer died ({describe(exc)}); rerun to render the rest") from exc
            continue
        yield results
        send(actor)


def _creation_error(exc: BaseException) -> str:
    """What stopped an actor's constructor: the last line of Ray's message is the exception raised
    there ('workers.bench_render.RendererError: cannot load ...'; Ray keeps no `cause` for it)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    last = lines[-1] if lines else type(exc).__name__
    return re.sub(rf"^(?:[\w.]+\.)?{RendererError.__name__}: ", "", last)


def _prepend(first: list[RenderItem], rest: Iterator[list[RenderItem]]) -> Iterator[list[RenderItem]]:
    yield first
    yield from rest


def _kill(actor: Any) -> None:
    import ray

    ray.kill(actor)
