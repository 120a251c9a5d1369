"""`motionnft data mine --ray-address`: the miner's stages as a Ray Data pipeline.

    read (one row per video) -> flat_map examine_video (CPU tasks: decode + prefilter, a row per window)
      -> map_batches JudgeStage (one actor; a batch's windows judged concurrently: bounded calls)
      -> iter_rows on the driver -> Commit (manifest, images, dataset)

The stages are the library's (``motionnft.mining``), the same functions the local process pool runs,
so the manifest is the same either way. Frames travel between stages as PNG bytes (lossless: the
judge and the dataset see exactly the pixels the local path would). Every column has one type in
every row (empty text or bytes stand for "none"): Ray Data's batches turn a None into NaN. Only the
driver writes files, so the workers need no shared filesystem; they do need to read the videos (a
shared mount or object store path that every node sees).
"""

from __future__ import annotations

import asyncio
import io
import json
from functools import partial
from typing import Any

import numpy as np
from PIL import Image

from motionnft.contracts.client import JudgeClient
from motionnft.contracts.images import encode_image_bytes
from motionnft.mining.curation import judge_window, prefilter_record, unjudged_record
from motionnft.mining.examine import Examined, VideoExamined, examine_video
from motionnft.mining.instructions import InstructionWriter
from motionnft.mining.manifest import WindowRecord
from motionnft.mining.run import Commit, MiningJob, MiningSummary, Task, plan
from motionnft.mining.settings import MiningSettings
from motionnft.mining.video import Window
from motionnft.progress import StepProgress
from workers.local_ray import ray_session


def _png(pixels: np.ndarray | None) -> bytes:
    return b"" if pixels is None else encode_image_bytes(pixels, png_compress_level=1)


def _pixels(data: bytes) -> np.ndarray | None:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) if data else None


def examine_rows(row: dict[str, Any], settings_json: str) -> list[dict[str, Any]]:
    """Ray Data flat_map: one video row -> one row per examined window (or one row saying it is unreadable)."""
    result = examine_video(row["video"], MiningSettings.model_validate_json(settings_json), frozenset(row["skip"]))
    if result.error is not None:
        return [{"video": row["video"], "video_error": result.error, "window": "", "record": "",
                 "first": b"", "last": b"", "of": 1}]  # fmt: skip
    # "of": the video's window count, so the driver knows when a video is done (its progress step).
    return [{**_window_row(examined), "of": len(result.windows)} for examined in result.windows]


def _window_row(examined: Examined) -> dict[str, Any]:
    window = examined.window
    examined_json = {"reason": examined.reason, "measures": examined.measures, "error": examined.error,
                     "window": [window.index, window.first, window.last, window.start_s, window.end_s]}  # fmt: skip
    return {"video": examined.video, "video_error": "", "window": json.dumps(examined_json), "record": "",
            "first": _png(examined.first), "last": _png(examined.last)}  # fmt: skip


def _examined(row: dict[str, Any]) -> Examined:
    fields = json.loads(row["window"])
    index, first, last, start_s, end_s = fields["window"]
    return Examined(row["video"], Window(int(index), int(first), int(last), float(start_s), float(end_s)),
                    fields["reason"], dict(fields["measures"]), _pixels(row["first"]), _pixels(row["last"]),
                    fields["error"])  # fmt: skip


class JudgeStage:
    """Ray Data map_batches actor: the judge (and writer) calls of a batch of windows, concurrently."""

    def __init__(self, job: MiningJob) -> None:
        self.job = job

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        rows = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
        batch["record"] = np.array(asyncio.run(self._judge(rows)), dtype=object)
        return batch

    async def _judge(self, rows: list[dict[str, Any]]) -> list[str]:
        job = self.job
        assert job.judge_url is not None
        async with JudgeClient(job.judge_url, token=job.token, timeout_s=120.0, deadline_s=300.0) as judge:
            writer = InstructionWriter(job.writer_url, job.writer_model, token=job.token) if job.writer_url else None

            async def one(row: dict[str, Any]) -> str:
                if not row["window"] or json.loads(row["window"])["reason"] is not None:
                    return ""  # the driver commits what the prefilter decided
                record = await judge_window(_examined(row), judge, writer, job.settings)
                return record.model_dump_json()

            try:
                return list(await asyncio.gather(*(one(row) for row in rows)))
            finally:
                if writer is not None:
                    await writer.aclose()


def mine_on_ray(job: MiningJob, address: str | None) -> MiningSummary:
    """Mine ``job.videos`` as a Ray Data pipeline on the cluster at ``address`` (None: Ray as it is, or a
    local one). Same manifest and dataset as ``motionnft.mining.run.mine_locally``."""
    import ray

    commit = Commit(job)
    tasks = plan(job.videos, commit.manifest.records, job.judge_url is not None)
    try:
        if address is not None and not ray.is_initialized():
            ray.init(address=address)
        with ray_session(), StepProgress("mine videos", total=len(tasks), enabled=job.progress) as bar:
            seen: dict[str, int] = {}
            for row in _pipeline(job, tasks).iter_rows():
                _commit_row(row, commit, job.judge_url is not None)
                seen[row["video"]] = seen.get(row["video"], 0) + 1
                if seen[row["video"]] == row["of"]:
                    bar.advance(commit.metrics())
    finally:
        summary = commit.finish()
    return summary


def _pipeline(job: MiningJob, tasks: list[Task]) -> Any:
    import ray.data

    items = [{"video": t.video, "skip": sorted(t.skip)} for t in tasks]
    dataset: Any = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    examine = partial(examine_rows, settings_json=job.settings.model_dump_json())
    dataset = dataset.flat_map(examine, num_cpus=1)
    if job.judge_url is not None:
        # One actor holding `judge_concurrency` calls at once: the judge service scales, the client bounds.
        dataset = dataset.map_batches(JudgeStage, fn_constructor_kwargs={"job": job}, batch_size=job.judge_concurrency,
                                      concurrency=1, num_cpus=0.1, batch_format="numpy")  # fmt: skip
    return dataset


def _commit_row(row: dict[str, Any], commit: Commit, has_judge: bool) -> None:
    if row["video_error"]:
        commit.video_failed(VideoExamined(row["video"], [], row["video_error"]))
        return
    examined = _examined(row)
    commit.examined += 1
    if examined.reason is not None:
        commit.add(prefilter_record(examined))
    elif has_judge:
        commit.judge_calls += 1
        commit.add(WindowRecord.model_validate_json(row["record"]), examined)
    else:
        commit.add(unjudged_record(examined), examined)
