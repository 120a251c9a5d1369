"""Benchmark of `motionnft data mine`'s prefilter on this machine: windows per second of the stages that
run before any judge call, and the share of judge calls the prefilter saves on the test corpus.

One run, side by side: the corpus at its own size (192 x 144) and enlarged to 960 x 720 (the same
scenes; decoding grows with the pixels, the statistics are taken at 256 px either way), each video
examined in this process (one core), with the time split into decoding, frame statistics and flow;
then the whole prefilter through the process pool (`mine_locally`, no judge) with 1 and 2 workers.
The corpus is repeated `--repeat` times (copies under other names) so each measurement covers enough
windows. Writes the `bench-mine` section of docs/benchmarks.md.

    python -m benchmarks.bench_mine --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.report import machine_description, markdown_table, write_section
from motionnft.mining import examine as examine_module
from motionnft.mining.corpus import EXPECTED, write_corpus
from motionnft.mining.run import MiningJob, mine_locally
from motionnft.mining.settings import MiningSettings
from motionnft.mining.video import find_videos


def build(folder: Path, scale: float, repeat: int) -> list[str]:
    """The corpus at ``scale``, its readable clips copied ``repeat`` times; returns the video paths."""
    write_corpus(folder / "base", scale=scale)
    for copy in range(repeat):
        for clip in (folder / "base").glob("*.mp4"):
            if clip.name != "corrupt.mp4":
                shutil.copy(clip, folder / f"{clip.stem}-{copy}.mp4")
    return [str(v) for v in find_videos(folder) if "base" not in Path(v).parts]


class StageClock:
    """Wraps the examine stage's functions to add up their seconds (decode, frame statistics, flow)."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self._saved = (examine_module.read_frames, examine_module.frame_measures, examine_module.motion_measures)

    def _timed(self, name: str, function):  # type: ignore[no-untyped-def]
        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started

        return timed

    def __enter__(self) -> StageClock:
        read, frames, motion = self._saved
        examine_module.read_frames = self._timed("decode", read)
        examine_module.frame_measures = self._timed("frame statistics", frames)
        flow = examine_module.flow_estimator()
        estimate = flow.estimate
        flow.estimate = self._timed("flow", estimate)  # type: ignore[method-assign]
        examine_module.motion_measures = self._timed("flow", motion)
        self._flow = (flow, estimate)
        return self

    def __exit__(self, *exc: object) -> None:
        examine_module.read_frames, examine_module.frame_measures, examine_module.motion_measures = self._saved
        flow, estimate = self._flow
        flow.estimate = estimate  # type: ignore[method-assign]


def in_process(videos: list[str], settings: MiningSettings) -> tuple[int, int, float, Counter[str]]:
    """(windows, windows passed, seconds, seconds per stage) examining every video here, one core."""
    examine_module.examine_video(videos[0], settings)  # warm-up: the flow estimator, OpenCV's decoders
    with StageClock() as clock:
        started = time.perf_counter()
        results = [examine_module.examine_video(video, settings) for video in videos]
        seconds = time.perf_counter() - started
    windows = [w for r in results for w in r.windows]
    return len(windows), sum(w.reason is None for w in windows), seconds, clock.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--repeat", type=int, default=12)
    args = parser.parse_args()
    settings = MiningSettings()
    rows, pool_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for scale, label in ((1.0, "192 x 144"), (5.0, "960 x 720")):
            videos = build(Path(tmp) / label.replace(" ", ""), scale, args.repeat)
            windows, passed, seconds, stages = in_process(videos, settings)
            split = ", ".join(f"{name} {1000 * s / windows:.1f}" for name, s in stages.most_common())
            rows.append([label, str(windows), f"{windows / seconds:.1f}", f"{1000 * seconds / windows:.1f}", split])
            print(rows[-1], flush=True)
            if scale == 1.0:
                saved = 1 - passed / windows
            else:  # the pool where decoding costs something, as it does for real videos
                for workers in (1, 2):
                    out = Path(tmp) / f"mined-{workers}"
                    started = time.perf_counter()
                    summary = mine_locally(MiningJob(videos, out, settings, workers=workers, progress=False))
                    wall = time.perf_counter() - started
                    pool_rows.append([str(workers), str(summary.examined_windows), f"{wall:.1f}",
                                      f"{summary.examined_windows / wall:.1f}"])  # fmt: skip
                    print(pool_rows[-1], flush=True)
    clips = sum(len(w) for name, w in EXPECTED.items() if name != "corrupt.mp4")
    body = f"""## Mining videos: the prefilter (bench-mine)

`make bench-mine` (benchmarks/bench_mine.py), {machine_description("cpu")}, in one run. The test
corpus (`motionnft data video-corpus`: {clips} readable windows of 3 s at 10 fps, each clip made to
trigger one decision) copied {args.repeat} times. Examined in one process, one core, after a warm-up;
statistics at 256 px on the long side whatever the video's size; the time per window split by stage
(ms; the flow is four DIS flows between neighbouring probes, only for windows whose frame checks pass):

{markdown_table(["video size", "windows", "windows/s", "ms/window", "ms/window by stage"], rows)}

The 960 x 720 windows through `mine_locally` (spawned worker processes, no judge, writing the
manifest and the kept pairs' PNGs; wall time includes starting the workers, about 3 s for torch
and OpenCV, so the pool's rate is below the one-core rate above):

{markdown_table(["workers", "windows", "wall s", "windows/s"], pool_rows)}

Judge calls saved: the prefilter passes {passed} of {windows} readable windows, so it spares the judge
{100 * saved:.0f} % of the calls it would otherwise get (each call asks 6 questions: four criteria,
category, summary). The corpus is built to exercise every reason, one clip each; on real footage
the share depends on the source (static talking heads and camera moves are common in stock video).
"""
    write_section(args.out, "bench-mine", body)
    print(body)


if __name__ == "__main__":
    main()
