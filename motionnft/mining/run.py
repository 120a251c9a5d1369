"""Mining a set of videos into ``out``: plan what still needs deciding, examine, judge, commit.

The driver alone writes (manifest, images, dataset), so the workers need no shared filesystem lock.
``mine_locally`` runs the examine stage in a process pool and the judge stage as bounded concurrent
calls on the driver's event loop; ``motionnft.mining.ray_run`` runs the same two stages as a Ray Data
pipeline. Both hand every decided window to ``Commit``.

Resuming: a window already kept, rejected or unreadable is done. An ``undecided`` window is examined
and judged again; so is a window kept unjudged when this run has a judge, and any window the manifest
lacks (a run killed mid-video). A video found unreadable as a whole is not opened again; every other
video is opened, to count its windows.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from motionnft.contracts.client import JudgeClient
from motionnft.mining.curation import judge_window, prefilter_record, unjudged_record
from motionnft.mining.dataset import DatasetFormat, write_dataset, write_pair_images
from motionnft.mining.examine import Examined, VideoExamined, examine_video
from motionnft.mining.instructions import InstructionWriter
from motionnft.mining.manifest import ManifestWriter, WindowRecord
from motionnft.mining.settings import MiningSettings
from motionnft.progress import StepProgress


@dataclass(frozen=True)
class MiningJob:
    """What to mine and with what; URLs None mean no judge (prefilter only) or no writer (templates)."""

    videos: Sequence[str]
    out: Path
    settings: MiningSettings = field(default_factory=MiningSettings)
    judge_url: str | None = None
    writer_url: str | None = None
    writer_model: str = "Qwen/Qwen2.5-7B-Instruct"
    token: str | None = None
    fmt: DatasetFormat = "jsonl"
    workers: int = 1
    judge_concurrency: int = 8
    progress: bool = True


@dataclass
class MiningSummary:
    """How a run ended: its records (sorted), counts by status and reason, and the dataset written."""

    records: list[WindowRecord]
    dataset: Path
    examined_windows: int = 0
    judge_calls: int = 0
    counts: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Task:
    """One video to examine, and the windows (start times) of it already decided for good."""

    video: str
    skip: frozenset[float] = frozenset()


def plan(videos: Iterable[str], done: dict[tuple[str, float], WindowRecord], has_judge: bool) -> list[Task]:
    """Every video not found unreadable as a whole, each with the windows that need no new decision.

    A window missing from the manifest is examined: a run killed while judging a video leaves some of
    its windows unrecorded, and only opening the video says how many it has.
    """
    skip: dict[str, set[float]] = {}
    unreadable: set[str] = set()
    for record in done.values():
        if record.status == "unreadable" and record.end_s == 0.0:  # the whole video: see Commit.video_failed
            unreadable.add(record.video)
        elif _final(record, has_judge):
            skip.setdefault(record.video, set()).add(record.start_s)
    return [Task(v, frozenset(skip.get(v, ()))) for v in dict.fromkeys(videos) if v not in unreadable]


def _final(record: WindowRecord, has_judge: bool) -> bool:
    return record.status != "undecided" and not (has_judge and record.status == "kept" and not record.judged)


class Commit:
    """The driver's side: turns examined windows and verdicts into manifest lines and pair images.

    A kept pair's PNGs are written on a small thread pool (Pillow's encoder releases the GIL), so
    encoding a 1024 px pair (~0.3 s) does not hold up the loop that feeds the judge; its manifest
    line is appended only once both images are on disk, so a killed run never lists a pair it lacks.
    """

    def __init__(self, job: MiningJob) -> None:
        self.job = job
        self.manifest = ManifestWriter(job.out, job.settings)
        self.examined = 0
        self.judge_calls = 0
        self.counts: Counter[str] = Counter()
        self.started = time.perf_counter()
        self._lock = threading.Lock()
        self._writers = ThreadPoolExecutor(2, thread_name_prefix="pair-images")
        self._writing: list[Future[None]] = []

    def video_failed(self, result: VideoExamined) -> None:
        self.add(WindowRecord(video=result.video, start_s=0.0, end_s=0.0, status="unreadable",
                              reason="decode_error", note=result.error))  # fmt: skip

    def add(self, record: WindowRecord, examined: Examined | None = None) -> None:
        if record.status == "kept" and examined is not None and record.id is not None:
            self._writing.append(self._writers.submit(self._write_kept, record, examined))
        else:
            self._append(record)

    def _write_kept(self, record: WindowRecord, examined: Examined) -> None:
        assert examined.first is not None and examined.last is not None and record.id is not None
        write_pair_images(self.job.out, record.id, examined.first, examined.last)
        self._append(record)

    def _append(self, record: WindowRecord) -> None:
        with self._lock:
            self.manifest.add(record)
            self.counts[record.status if record.status != "rejected" else str(record.reason)] += 1

    def finish(self) -> MiningSummary:
        """Wait for the images, rewrite the manifest sorted, write the dataset file."""
        try:
            for writing in self._writing:
                writing.result()  # a failed image write (disk full) fails the run, after the rest
        finally:
            self._writers.shutdown()
            records = self.manifest.close()
        dataset = write_dataset(self.job.out, records, self.job.fmt)
        counts: Counter[str] = Counter(r.status for r in records)
        return MiningSummary(records, dataset, self.examined, self.judge_calls, counts)

    def metrics(self) -> dict[str, int | str]:
        with self._lock:
            counts = dict(sorted(self.counts.items()))
        rate = self.examined / max(time.perf_counter() - self.started, 1e-9)
        return {"windows": self.examined, "win/s": f"{rate:.1f}", **counts}


def mine_locally(job: MiningJob) -> MiningSummary:
    """Mine ``job.videos`` on this machine: ``job.workers`` processes examine, the driver judges and writes."""
    commit = Commit(job)
    tasks = plan(job.videos, commit.manifest.records, job.judge_url is not None)
    try:
        asyncio.run(_mine(job, tasks, commit))
    finally:
        summary = commit.finish()
    return summary


async def _mine(job: MiningJob, tasks: list[Task], commit: Commit) -> None:
    loop = asyncio.get_running_loop()
    judge = JudgeClient(job.judge_url, token=job.token, timeout_s=120.0, deadline_s=300.0) if job.judge_url else None
    writer = InstructionWriter(job.writer_url, job.writer_model, token=job.token) if job.writer_url else None
    slots = asyncio.Semaphore(job.judge_concurrency)

    async def judged(examined: Examined) -> None:
        assert judge is not None
        async with slots:
            commit.judge_calls += 1
            commit.add(await judge_window(examined, judge, writer, job.settings), examined)

    try:
        with StepProgress("mine videos", total=len(tasks), enabled=job.progress) as bar, \
                ProcessPoolExecutor(job.workers, _SPAWN, initializer=_one_thread) as pool:  # fmt: skip
            pending = [loop.run_in_executor(pool, examine_video, t.video, job.settings, t.skip) for t in tasks]
            judging: set[asyncio.Task[None]] = set()
            for next_done in asyncio.as_completed(pending):
                result = await next_done
                for task in _route(result, commit, judge is not None):
                    judging.add(asyncio.create_task(judged(task)))
                bar.advance(commit.metrics())
            if judging:
                await asyncio.gather(*judging)
    finally:
        for client in (judge, writer):
            if client is not None:
                await client.aclose()


def _route(result: VideoExamined, commit: Commit, has_judge: bool) -> list[Examined]:
    """Commit what the prefilter decided for one video; return the windows that go to the judge."""
    if result.error is not None:
        commit.video_failed(result)
        return []
    to_judge = []
    for examined in result.windows:
        commit.examined += 1
        if examined.reason is not None:
            commit.add(prefilter_record(examined))
        elif has_judge:
            to_judge.append(examined)
        else:
            commit.add(unjudged_record(examined), examined)
    return to_judge


# Workers are spawned, not forked: the driver has threads (the event loop's HTTP pools, OpenCV's and
# torch's pools) and a forked child inherits their locks in whatever state they were.
_SPAWN = multiprocessing.get_context("spawn")


def _one_thread() -> None:
    """Worker processes: one OpenCV/torch thread each, the parallelism is the pool's."""
    import cv2
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
